"""Benchmark: fjordgate's detector vs Microsoft Presidio vs the regex floor, same corpus.

    .venv/bin/python -m bench.pii [--docs 3000] [--presidio-docs 300] [--repeat 5]

Documents per second and recall per type on the labelled corpus that the
tests use (gateway/pii/corpus.py), side by side in one run, as Markdown on
stdout and in bench/results/pii.md. Presidio needs the optional extra
`bench` (`pip install -e ".[bench]"`); without it its row says so.

Recall counts a labelled span as found when a finding of the same type
overlaps it; for the floor (no types, no validation) when any candidate
whose shape can hold that type overlaps it.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from bench.pii.engines import compare_engines
from gateway.pii import PII_TYPES, Detector
from gateway.pii.corpus import Document, corpus
from gateway.pii.findings import Finding
from gateway.pii.patterns import CANDIDATES

# Which types a candidate shape of the floor pattern can hold.
SHAPE_TYPES: dict[str, frozenset[str]] = {
    "iban": frozenset({"iban"}),
    "plate": frozenset({"vehicle_plate"}),
    "phone_intl": frozenset({"phone"}),
    "phone_local": frozenset({"phone"}),
    "card": frozenset({"payment_card"}),
    "eleven": frozenset({"fodselsnummer", "d_nummer", "h_nummer", "kontonummer"}),
    "nine": frozenset({"organisasjonsnummer"}),
    "ipv4": frozenset({"ip_address"}),
    "ipv6": frozenset({"ip_address"}),
    "email": frozenset({"email"}),
}

Span = tuple[int, int, frozenset[str]]


def _pass_seconds(texts: Sequence[str], run: Callable[[str], object]) -> float:
    started = time.perf_counter()
    for text in texts:
        run(text)
    return time.perf_counter() - started


def _interleaved(
    texts: Sequence[str], runs: dict[str, Callable[[str], object]], repeat: int
) -> dict[str, float]:
    """Documents/second of each engine, robust to a shared machine's bursts of load:
    the corpus in chunks of 100, each chunk run by every engine in turn `repeat`
    times, the fastest pass of each engine per chunk summed over the chunks."""
    total = dict.fromkeys(runs, 0.0)
    for i in range(0, len(texts), 100):
        chunk = texts[i : i + 100]
        best = dict.fromkeys(runs, float("inf"))
        for _ in range(repeat):
            for name, run in runs.items():
                best[name] = min(best[name], _pass_seconds(chunk, run))
        for name in runs:
            total[name] += best[name]
    return {name: len(texts) / seconds for name, seconds in total.items()}


def _against_presidio(
    texts: Sequence[str], presidio: Callable[[str], object], ours: Callable[[str], object]
) -> tuple[float, float]:
    """Docs/second of Presidio and of fjordgate on the same texts, chunk by chunk in
    turn (Presidio one pass, fjordgate best of three per chunk)."""
    presidio_seconds = ours_seconds = 0.0
    for i in range(0, len(texts), 25):
        chunk = texts[i : i + 25]
        presidio_seconds += _pass_seconds(chunk, presidio)
        ours_seconds += min(_pass_seconds(chunk, ours) for _ in range(3))
    return len(texts) / presidio_seconds, len(texts) / ours_seconds


def _recall(docs: Sequence[Document], spans: Iterable[list[Span]]) -> dict[str, float]:
    found: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for doc, predicted in zip(docs, spans, strict=True):
        for label in doc.labels:
            total[label.type] += 1
            if any(
                label.type in kinds and start < label.end and label.start < end
                for start, end, kinds in predicted
            ):
                found[label.type] += 1
    result: dict[str, float] = {t: found[t] / total[t] for t in PII_TYPES if total[t]}
    result["all"] = sum(found.values()) / max(1, sum(total.values()))
    return result


def _fjordgate_spans(detector: Detector, text: str) -> list[Span]:
    return [(f.start, f.end, frozenset({f.type})) for f in detector.scan(text)]


def _floor_spans(text: str) -> list[Span]:
    return [(m.start(), m.end(), SHAPE_TYPES[m.lastgroup or ""]) for m in CANDIDATES.finditer(text)]


def _floor_pass(text: str) -> None:
    for _ in CANDIDATES.finditer(text):
        pass


def _compiled_scan(detector: Detector) -> Callable[[str], object] | None:
    """The gateway's compiled scan as the gateway uses it (gateway/native.py): the Rust
    detector, and the Python one for the texts it defers. None without the module."""
    try:
        from fjordgate_native import scan_text
    except ImportError:
        return None

    def scan(text: str) -> object:
        found = scan_text(text)
        return detector.scan(text) if found is None else found

    return scan


def _compiled_spans(scan: Callable[[str], object], text: str) -> list[Span]:
    found = scan(text)
    assert isinstance(found, list)
    return [
        (f.start, f.end, frozenset({f.type}))
        if isinstance(f, Finding)
        else (f[0], f[1], frozenset({f[2]}))
        for f in found
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pii", description=__doc__)
    parser.add_argument("--docs", type=int, default=3000, help="corpus documents (default 3000)")
    parser.add_argument(
        "--presidio-docs", type=int, default=300, help="documents for Presidio (slow; default 300)"
    )
    parser.add_argument(
        "--repeat", type=int, default=7, help="timed passes per chunk of 100, best kept"
    )
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--no-presidio", action="store_true", help="skip Presidio")
    parser.add_argument("--no-engines", action="store_true", help="skip the engine comparison")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pii.md"))
    args = parser.parse_args(argv)

    docs = corpus(args.docs, seed=args.seed)
    texts = [d.text for d in docs]
    detector = Detector()
    chars = sum(len(t) for t in texts)

    # (engine, documents, docs/s, fjordgate's docs/s measured beside it, recall)
    rows: list[tuple[str, int, float, float, dict[str, float]]] = []
    compiled = _compiled_scan(detector)
    engines: dict[str, Callable[[str], object]] = {"floor": _floor_pass, "ours": detector.scan}
    if compiled is not None:
        engines["compiled"] = compiled
    rates = _interleaved(texts, engines, args.repeat)
    floor_rate, ours_rate = rates["floor"], rates["ours"]
    rows.append(
        (
            "fjordgate Detector",
            len(texts),
            ours_rate,
            ours_rate,
            _recall(docs, (_fjordgate_spans(detector, t) for t in texts)),
        )
    )
    rows.append(
        (
            "floor: one re.finditer pass, no validation",
            len(texts),
            floor_rate,
            ours_rate,
            _recall(docs, (_floor_spans(t) for t in texts)),
        )
    )

    if compiled is not None:
        rows.append(
            (
                "fjordgate compiled scan (gateway fast path; deferred texts scanned by Python)",
                len(texts),
                rates["compiled"],
                ours_rate,
                _recall(docs, (_compiled_spans(compiled, t) for t in texts)),
            )
        )

    presidio_note = ""
    presidio_rate: float | None = None
    if not args.no_presidio:
        try:
            from bench.pii.presidio_peer import SPACY_MODEL, build_analyzer, presidio_findings

            analyzer = build_analyzer()
            subset = corpus(args.presidio_docs, seed=args.seed)
            sub_texts = [d.text for d in subset]
            presidio_findings(analyzer, sub_texts[0])  # warm-up: lazy model parts
            presidio_rate, ours_sub = _against_presidio(
                sub_texts, lambda t: presidio_findings(analyzer, t), detector.scan
            )
            spans = [
                [(s, e, frozenset({k})) for s, e, k in presidio_findings(analyzer, t)]
                for t in sub_texts
            ]
            rows.append(
                (
                    f"Presidio AnalyzerEngine (spaCy {SPACY_MODEL} + Norwegian recognizers)",
                    len(sub_texts),
                    presidio_rate,
                    ours_sub,
                    _recall(subset, spans),
                )
            )
            presidio_note = (
                f"Measured side by side on Presidio's {len(sub_texts)}-document subset "
                f"(chunks of 25 in turn): fjordgate {ours_sub:,.0f} docs/s, Presidio "
                f"{presidio_rate:,.1f} docs/s: **fjordgate {ours_sub / presidio_rate:,.0f}× "
                "faster** (goal: ≥ 100×)."
            )
        except ImportError as exc:
            presidio_note = (
                f'Presidio not measured: {exc.name} is not installed (pip install -e ".[bench]").'
            )

    lines = [
        "# PII detection benchmark",
        "",
        f"Corpus: {len(texts)} generated Norwegian documents ({chars:,} characters; "
        "valid identifiers of every type, near-misses, plain text), seed "
        f"{args.seed}. Machine: {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} cores. Per chunk of 100 documents the "
        f"best of {args.repeat} passes, engines in turn, summed (Presidio: 1 pass per chunk "
        "of 25, fjordgate beside it).",
        "",
        "## Throughput",
        "",
        "| engine | docs | docs/s | vs fjordgate (measured beside it) | recall (all types) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, count, rate, beside, recall in rows:
        lines.append(
            f"| {name} | {count} | {rate:,.1f} | {rate / beside:.3g}× | {recall['all']:.4f} |"
        )
    lines += [
        "",
        f"- fjordgate / floor: **{floor_rate / ours_rate:.2f}× slower than the floor** "
        "(goal: within 3×).",
    ]
    if presidio_note:
        lines.append(f"- {presidio_note}")
    lines += ["", "## Recall per type", ""]
    header = "| type | " + " | ".join(name.split(" (")[0] for name, *_ in rows) + " |"
    lines += [header, "| --- |" + " ---: |" * len(rows)]
    for t in PII_TYPES:
        cells = " | ".join(f"{r[4][t]:.4f}" if t in r[4] else "–" for r in rows)
        lines.append(f"| {t} | {cells} |")
    if not args.no_engines:
        lines += [
            "",
            "## Candidate pass by engine (no validation)",
            "",
            "| engine | docs/s | vs re | matches | note |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        results = compare_engines(texts, repeats=args.repeat)
        base = results[0].docs_per_second
        for r in results:
            ratio = f"{r.docs_per_second / base:.2f}×" if r.docs_per_second else "–"
            lines.append(
                f"| {r.engine} | {r.docs_per_second:,.0f} | {ratio} | {r.matches} | {r.note} |"
            )
    report = "\n".join(lines) + "\n"
    print(report)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report, encoding="utf-8")
    except OSError as exc:
        print(f"could not write {args.out}: {exc.strerror}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
