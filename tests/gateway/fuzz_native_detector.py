"""Fuzz run of the compiled scanner against `Detector.scan`, outside the test suite.

    .venv/bin/python -m tests.gateway.fuzz_native_detector [--texts N] [--seed S] [--workers W]

Every text from tests/gateway/detector_texts.py for which `scan_text` returns a
list must get exactly the Python detector's findings; prints the mismatches
(the first few texts) and how many texts it deferred to Python.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import sys

import fjordgate_native

from gateway.pii.detector import Detector
from tests.gateway.detector_texts import random_text


def _run(job: tuple[int, int]) -> tuple[int, int, list[str]]:
    seed, count = job
    rng = random.Random(seed)
    detector = Detector()
    deferred = 0
    mismatches: list[str] = []
    for _ in range(count):
        text = random_text(rng)
        native = fjordgate_native.scan_text(text)
        if native is None:
            deferred += 1
            continue
        reference = [(f.start, f.end, f.type, f.synthetic) for f in detector.scan(text)]
        if native != reference:
            mismatches.append(f"{text!r}: native {native} != python {reference}")
    return count, deferred, mismatches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    chunk = 20_000
    jobs = [
        (args.seed * 1_000_003 + i, min(chunk, args.texts - start))
        for i, start in enumerate(range(0, args.texts, chunk))
    ]
    total = deferred = 0
    mismatches: list[str] = []
    with multiprocessing.Pool(args.workers) as pool:
        for count, d, m in pool.imap_unordered(_run, jobs):
            total += count
            deferred += d
            mismatches += m
    for line in mismatches[:20]:
        print(line)
    print(
        f"texts {total}, mismatches {len(mismatches)}, "
        f"deferred {deferred} ({100 * deferred / total:.2f}%)"
    )
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
