"""Timing: `Detector().scan` against the compiled `fjordgate_native.scan_text`, one process.

    .venv/bin/python -m bench.pii.native_scan [--rounds 3]

Interleaved (each text scanned by both, in turn) on the synthetic notes of
gateway.synthetic and on the labelled corpus; prints µs per text and the
ratio per round. The machine is shared: read the ratios, not the µs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import fjordgate_native

from gateway.pii.corpus import corpus
from gateway.pii.detector import Detector

NOTES = (
    "Sjåføren ringte inn fra +47 91234567, se sak.",
    "Eier oppgitt med fnr 01018012345 på skiltet.",
    "Kontakt: sjafor12@example.no",
    "Fart målt ved bomstasjon.",
)


def _time(scan: Callable[[str], Any], texts: Sequence[str], repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        for text in texts:
            scan(text)
    return (time.perf_counter() - start) / (repeat * len(texts)) * 1e6


def _round(texts: Sequence[str], repeat: int) -> tuple[float, float]:
    python_scan = Detector().scan
    native_scan = fjordgate_native.scan_text
    python_us = native_us = 0.0
    for _ in range(10):  # interleaved slices: both see the same machine state
        python_us += _time(python_scan, texts, repeat) / 10
        native_us += _time(native_scan, texts, repeat) / 10
    return python_us, native_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    documents = [d.text for d in corpus()]
    deferred = sum(fjordgate_native.scan_text(t) is None for t in documents)
    print(f"corpus: {len(documents)} documents, {deferred} deferred to Python")
    for name, texts, repeat in (("notes", NOTES, 5_000), ("corpus", documents, 5)):
        for n in range(args.rounds):
            python_us, native_us = _round(texts, repeat)
            print(
                f"{name} round {n + 1}: python {python_us:.2f} µs/text, "
                f"native {native_us:.3f} µs/text, ratio {python_us / native_us:.1f}x"
            )


if __name__ == "__main__":
    main()
