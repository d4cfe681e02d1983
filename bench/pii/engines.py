"""The candidate pass on four engines: Python `re`, google-re2, hyperscan, pyahocorasick.

All run over the same corpus documents, one call per document as the gateway
does. They are not equivalent, and the table says how:

- `re`: the detector's own alternation (gateway/pii/patterns.py), boundaries
  included: its matches are the candidates the validators receive.
- `re2`: the same branches with the look-arounds removed (RE2 has none), so it
  finds a superset that would still need boundary checks in Python.
- `hyperscan`: the same look-around-free branches in one multi-pattern
  database with leftmost start of match; it reports every match end
  (overlapping), through a Python callback per match, in byte offsets that
  would have to be mapped back to characters. Chimera (hyperscan + PCRE, which
  would keep the look-arounds) is not in the PyPI wheel.
- `aho-corasick`: fixed strings only ('@', '+', '00', ':'): the anchors a
  prefilter could look for; the digit-class shapes cannot be expressed.

Measured on this machine (2 cores shared with other work, so absolute numbers
swing 3x between runs; 3,000 documents, best of 5; the bench prints the
current run), documents per second for the pass alone, quiet / loaded:
re 116,000 / 30,000-33,000 · google-re2 81,000 / 20,000 (0.6-0.7x re) ·
hyperscan 295,000 / 55,000 with every match end (1.7-2.5x re), 224,000 /
53,000 keeping the longest match per start (1.6-1.9x re) · aho-corasick
~1,900,000 (anchors only, not a candidate finder). The re numbers include the
first-character look-ahead in patterns.py, which doubled them.

Kept: Python `re`. google-re2 is slower here. Hyperscan's pass is up to
about 2x faster, but what it returns is not yet the candidate list: without
look-arounds it gives 9,226 starts where re gives 2,813 candidates, each of
which would need the boundary checks re does in C redone in Python, plus
re's leftmost-first choice between branches and a byte-to-character map for
every text with æøå (most of them). With the whole detector at about 2x the
bare re pass, the Python post-processing would eat most of the saving, and
the worst case is worse: a 100,000-digit run gives 400,000 callbacks
(0.16-0.77 s) where re finds no candidate in 0.04-0.16 s, because re's
boundary checks stop it at the start of the run. We did not build the
hyperscan post-processing end to end; this is the measured reason not to.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.pii.patterns import BRANCHES, CANDIDATES


def strip_lookarounds(pattern: str) -> str:
    """The pattern without (?=…), (?!…), (?<=…), (?<!…) groups (engines that lack them)."""
    out: list[str] = []
    i = 0
    n = len(pattern)
    while i < n:
        if pattern.startswith(("(?=", "(?!", "(?<=", "(?<!"), i):
            depth = 0
            in_class = False
            while i < n:
                c = pattern[i]
                if c == "\\":
                    i += 2
                    continue
                if in_class:
                    in_class = c != "]"
                elif c == "[":
                    in_class = True
                elif c == "(":
                    depth += 1
                elif c == ")":
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                i += 1
            continue
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class EngineResult:
    engine: str
    docs_per_second: float
    matches: int
    note: str


def _best_of(repeats: int, run: Callable[[], int]) -> tuple[float, int]:
    best = float("inf")
    count = 0
    for _ in range(repeats):
        started = time.perf_counter()
        count = run()
        best = min(best, time.perf_counter() - started)
    return best, count


def compare_engines(texts: Sequence[str], repeats: int = 5) -> list[EngineResult]:
    """Docs/second of the candidate pass on each engine that is installed."""
    results: list[EngineResult] = []

    def with_re() -> int:
        return sum(1 for t in texts for _ in CANDIDATES.finditer(t))

    elapsed, count = _best_of(repeats, with_re)
    results.append(EngineResult("re (stdlib)", len(texts) / elapsed, count, "the detector's pass"))

    stripped = {name: strip_lookarounds(body) for name, body in BRANCHES.items()}
    try:
        import re2

        options = re2.Options()
        options.max_mem = 64 << 20
        compiled = re2.compile(
            "|".join(f"(?P<{n}>{b})" for n, b in stripped.items()), options=options
        )

        def with_re2() -> int:
            return sum(1 for t in texts for _ in compiled.finditer(t))

        elapsed, count = _best_of(repeats, with_re2)
        results.append(
            EngineResult("google-re2", len(texts) / elapsed, count, "no look-arounds: superset")
        )
    except ImportError:
        results.append(EngineResult("google-re2", 0.0, 0, "not installed (extra 'bench')"))

    try:
        import hyperscan

        database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        flags = hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_UTF8
        database.compile(
            expressions=[b.encode("utf-8") for b in stripped.values()],
            ids=list(range(len(stripped))),
            elements=len(stripped),
            flags=[flags] * len(stripped),
        )
        encoded = [t.encode("utf-8") for t in texts]

        def with_hyperscan() -> int:
            hits = [0]

            def on_match(_id: int, _start: int, _end: int, _flags: int, _ctx: object) -> None:
                hits[0] += 1

            for data in encoded:
                database.scan(data, match_event_handler=on_match)
            return hits[0]

        elapsed, count = _best_of(repeats, with_hyperscan)
        results.append(
            EngineResult(
                "hyperscan",
                len(texts) / elapsed,
                count,
                "every match end, byte offsets, pre-encoded input",
            )
        )

        def with_hyperscan_deduplicated() -> int:
            # The least a detector on hyperscan must do: encode, and keep the longest
            # match per start (still without the boundary checks re does).
            total = 0

            def on_match(pid: int, start: int, end: int, _flags: int, longest: Any) -> None:
                seen = longest.get(start)
                if seen is None or end > seen[0]:
                    longest[start] = (end, pid)

            for text in texts:
                longest: dict[int, tuple[int, int]] = {}
                database.scan(text.encode("utf-8"), match_event_handler=on_match, context=longest)
                total += len(longest)
            return total

        elapsed, count = _best_of(repeats, with_hyperscan_deduplicated)
        results.append(
            EngineResult(
                "hyperscan + longest per start",
                len(texts) / elapsed,
                count,
                "still no boundary checks, byte offsets",
            )
        )
        digits = b"1" * 100_000
        calls = [0]

        def count_call(_id: int, _start: int, _end: int, _flags: int, _ctx: object) -> None:
            calls[0] += 1

        started = time.perf_counter()
        database.scan(digits, match_event_handler=count_call)
        hs_seconds = time.perf_counter() - started
        started = time.perf_counter()
        re_matches = sum(1 for _ in CANDIDATES.finditer("1" * 100_000))
        re_seconds = time.perf_counter() - started
        results.append(
            EngineResult(
                "adversarial: 100,000 digits",
                0.0,
                calls[0],
                f"hyperscan {calls[0]:,} callbacks in {hs_seconds * 1000:.0f} ms; "
                f"re {re_matches} matches in {re_seconds * 1000:.0f} ms",
            )
        )
    except ImportError:
        results.append(EngineResult("hyperscan", 0.0, 0, "not installed (extra 'bench')"))

    try:
        import ahocorasick

        automaton = ahocorasick.Automaton()
        for anchor in ("@", "+", "00", ":"):
            automaton.add_word(anchor, anchor)
        automaton.make_automaton()

        def with_aho() -> int:
            return sum(1 for t in texts for _ in automaton.iter(t))

        elapsed, count = _best_of(repeats, with_aho)
        results.append(
            EngineResult(
                "pyahocorasick",
                len(texts) / elapsed,
                count,
                "fixed anchors only: cannot express digit shapes",
            )
        )
    except ImportError:
        results.append(EngineResult("pyahocorasick", 0.0, 0, "not installed (extra 'bench')"))
    return results
