"""Child process of the kill -9 test: appends from several threads and prints each sequence
number only after `append` has returned (that is, after the record was fsynced)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from audit import AuditLog, SigningKey


def main() -> None:
    directory, key_path = Path(sys.argv[1]), Path(sys.argv[2])
    log = AuditLog.open(
        directory,
        SigningKey.load(key_path),
        batch_size=16,
        tree_head_every=25,
        segment_max_bytes=20_000,
    )
    print_lock = threading.Lock()

    def writer(n: int) -> None:
        i = 0
        while True:
            receipt = log.append({"type": "decision", "writer": n, "i": i, "outcome": "allow"})
            with print_lock:
                sys.stdout.write(f"{receipt.seq}\n")
                sys.stdout.flush()
            i += 1

    sys.stdout.write("ready\n")
    sys.stdout.flush()
    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
