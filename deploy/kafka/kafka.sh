#!/usr/bin/env bash
# A real single-node Apache Kafka (KRaft) on 127.0.0.1 for tests and local runs.
#   deploy/kafka/kafka.sh fetch | start [--data-dir DIR] [--port N] | stop --data-dir DIR | reap
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
py="${FJORDGATE_PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$here/../../.venv/bin/python" ]]; then py="$here/../../.venv/bin/python"; else py=python3; fi
fi
exec "$py" "$here/localkafka.py" "$@"
