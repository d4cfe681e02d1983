#!/usr/bin/env bash
# Set up a fresh machine for fjordgate. Idempotent: a second run only checks.
#   deploy/dev/setup.sh python     the virtualenv .venv with fjordgate and its dev tools
#   deploy/dev/setup.sh services   + Debian packages (deploy/dev/apt-packages.txt), JDK/Maven check,
#                                  and the Apache Kafka jars in the cache (for the real-service tests)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
what="${1:-python}"
say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

setup_python() {
  local py="${PYTHON:-python3}"
  if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    say "fjordgate needs Python >= 3.11 (found: $("$py" --version 2>&1))"; exit 1
  fi
  if [[ ! -x .venv/bin/python ]]; then
    say "creating .venv"
    "$py" -m venv .venv
  fi
  # Reinstall only when the dependency list changed.
  local stamp=.venv/.fjordgate-installed want
  want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
  if [[ ! -f $stamp || "$(cat "$stamp")" != "$want" ]] || ! .venv/bin/python -c 'import gateway.cli' 2>/dev/null; then
    say "installing fjordgate and its dependencies into .venv"
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e ".[dev]"
    echo "$want" > "$stamp"
  fi
  setup_native
}

# The compiled fast path of the pipeline (native/, a Rust extension built with maturin).
# Without Rust the gateway runs its Python steps only (and says so); CI requires it.
setup_native() {
  local stamp=.venv/.fjordgate-native want
  want="$(cat native/Cargo.toml native/Cargo.lock native/pyproject.toml native/fjordgate_native.pyi native/src/*.rs | sha256sum | cut -d' ' -f1)"
  if [[ -f $stamp && "$(cat "$stamp")" == "$want" ]] && .venv/bin/python -c 'import fjordgate_native' 2>/dev/null; then
    return
  fi
  if ! command -v cargo >/dev/null && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null; then
    if [[ -n "${CI:-}" ]]; then
      say "Rust (cargo) is not installed: CI needs the compiled pipeline (native/); install Rust with rustup"; exit 1
    fi
    say "Rust (cargo) is not installed: the gateway will run its Python steps only (slower); install Rust with rustup and run this again"
    return
  fi
  say "building the compiled pipeline (native/) with cargo"
  PATH="$root/.venv/bin:$PATH" .venv/bin/python -m pip install -q --no-build-isolation ./native
  echo "$want" > "$stamp"
}

apt_install_missing() {
  local missing=()
  while read -r pkg; do
    pkg="${pkg%%#*}"; pkg="$(echo "$pkg" | xargs)"
    [[ -z "$pkg" ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done < deploy/dev/apt-packages.txt
  for tool in java:openjdk-17-jdk-headless mvn:maven; do
    command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
  done
  if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
      say "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"; exit 1
    fi
    say "installing Debian packages: ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

setup_services() {
  apt_install_missing
  say "Apache Kafka jars: $(.venv/bin/python deploy/kafka/localkafka.py fetch)"
}

case "$what" in
  python) setup_python ;;
  services) setup_python; setup_services ;;
  *) say "unknown target: $what (python | services)"; exit 2 ;;
esac
