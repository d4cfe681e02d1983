#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: set-up, ruff, mypy --strict, pytest.
# Extra arguments go to pytest (e.g. deploy/dev/test.sh -k kafka).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
start=$(date +%s)
bash deploy/dev/setup.sh services || { echo "setup failed" >&2; exit 1; }

status=0
echo "== ruff" >&2
.venv/bin/ruff check gateway policies processor audit tests bench deploy || status=1
echo "== mypy --strict" >&2
.venv/bin/mypy || status=1
echo "== pytest" >&2
.venv/bin/python -m pytest "$@"
rc=$?
case $rc in
  0) ;;
  5) echo "pytest collected no tests: that is a failure of the test command, not a pass" >&2; status=1 ;;
  *) status=1 ;;
esac
echo "test command finished in $(( $(date +%s) - start ))s with status $status" >&2
exit $status
