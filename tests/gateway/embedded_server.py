"""A child process serving the embedded (local-log) gateway on a directory, for kill -9 tests.

    python -m tests.gateway.embedded_server DIR PORT API_KEY_DIGEST

The same parts as `fjordgate demo` uses: AuditLog, processor.LocalLog behind
LocalLogPublisher, the shipped norway-strict policy. Reopening DIR after a
crash repairs torn tails and rebuilds the event-id index from the log.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn

from audit import AuditLog, SigningKey
from gateway.auth import ApiKey
from gateway.demo import TAGGED_TOPIC, norway_strict_pack
from gateway.pii import Keyring
from gateway.publish import LocalLogPublisher
from gateway.server import uvicorn_config
from gateway.service import Gateway
from processor import LocalLog


def main() -> None:
    directory, port, digest = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    key_path = directory / "audit-key.pem"
    key = SigningKey.load(key_path) if key_path.exists() else SigningKey.create(key_path)
    ring_path = directory / "keyring.json"
    keyring = Keyring.load(ring_path) if ring_path.exists() else Keyring.generate(ring_path)
    audit = AuditLog.open(directory / "audit", key)
    log = LocalLog.open(directory / "log", partitions=2)
    publisher = LocalLogPublisher(log, [TAGGED_TOPIC], partitions=2)
    gateway = Gateway(
        policy_path=norway_strict_pack(),
        keyring=keyring,
        audit=audit,
        publisher=publisher,
        destination=publisher.destination,
        api_keys=[ApiKey("test", digest, frozenset({"norway-traffic"}))],
    )
    gateway.start()
    uvicorn.Server(uvicorn_config(gateway.app, host="127.0.0.1", port=port)).run()


if __name__ == "__main__":
    main()
