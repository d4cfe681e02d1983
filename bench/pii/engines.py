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

One run on this machine (2 cores shared with other work, so absolute numbers
swing 2-3x between runs; 3,000 documents; passes of all engines taken in
turn, best of 5), documents per second: re 72,000 · google-re2 26,000 (0.37x
re) · hyperscan 102,000 with every match end (1.4x) and 88,000 keeping the
longest match per start (1.2x) · hyperscan then re.match at each start, the
same candidates as re, 47,000 (0.65x) · aho-corasick 1,960,000 (anchors
only, not a candidate finder). In other runs hyperscan's raw pass reached
2.5x re, and hyperscan-then-re stayed at 0.65-1.0x. The re numbers include
the first-character look-ahead in patterns.py, which doubled them.

Kept: Python `re`, the fastest way to the detector's actual candidates.
google-re2 is slower here. Hyperscan's raw pass is faster, but what it
returns is not the candidate list: without look-arounds it gives 9,226 match
starts where re gives 2,813 candidates, in byte offsets. The cheapest exact
way we found to turn them into re's candidates (ask `re.match` only at the
starts hyperscan reported; identical output on every corpus document) is
slower than re alone. And the worst case is worse: a 100,000-digit run gives
hyperscan 400,000 callbacks (0.16-0.77 s) where re finds no candidate in
0.04-0.16 s, its boundary checks stopping it at the start of the run.
"""

from __future__ import annotations

import re
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


def compare_engines(texts: Sequence[str], repeats: int = 5) -> list[EngineResult]:
    """Docs/second of the candidate pass on each engine that is installed."""
    results: list[EngineResult] = []
    timed: list[tuple[EngineResult, Callable[[], int]]] = []

    def _later(run: Callable[[], int], result: EngineResult) -> None:
        results.append(result)
        timed.append((result, run))

    def with_re() -> int:
        return sum(1 for t in texts for _ in CANDIDATES.finditer(t))

    _later(with_re, EngineResult("re (stdlib)", 0.0, 0, "the detector's pass"))

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

        _later(with_re2, EngineResult("google-re2", 0.0, 0, "no look-arounds: superset"))
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

        _later(
            with_hyperscan,
            EngineResult(
                "hyperscan",
                0.0,
                0,
                "every match end, byte offsets, pre-encoded input",
            ),
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

        _later(
            with_hyperscan_deduplicated,
            EngineResult(
                "hyperscan + longest per start",
                0.0,
                0,
                "still no boundary checks, byte offsets",
            ),
        )
        match_at = CANDIDATES.match

        def on_start(_id: int, start: int, _end: int, _flags: int, starts: Any) -> None:
            starts.add(start)

        def hyperscan_candidates(text: str) -> list[re.Match[str]]:
            """re's exact candidates, found by asking re only where hyperscan saw a
            match start (the look-around-free branches find a superset of starts)."""
            data = text.encode("utf-8")
            starts: set[int] = set()
            database.scan(data, match_event_handler=on_start, context=starts)
            found: list[re.Match[str]] = []
            reached = 0
            ascii_only = len(data) == len(text)
            for byte_start in sorted(starts):
                start = (
                    byte_start
                    if ascii_only
                    else len(data[:byte_start].decode("utf-8", errors="ignore"))
                )
                if start < reached:
                    continue
                match = match_at(text, start)
                if match is not None:
                    found.append(match)
                    reached = match.end()
            return found

        mismatched = sum(
            [(m.lastgroup, m.span()) for m in hyperscan_candidates(t)]
            != [(m.lastgroup, m.span()) for m in CANDIDATES.finditer(t)]
            for t in texts
        )

        def with_hyperscan_then_re() -> int:
            return sum(len(hyperscan_candidates(t)) for t in texts)

        _later(
            with_hyperscan_then_re,
            EngineResult(
                "hyperscan, then re.match at each start",
                0.0,
                0,
                f"the same candidates as re ({mismatched} documents differ)",
            ),
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

        _later(
            with_aho,
            EngineResult(
                "pyahocorasick",
                0.0,
                0,
                "fixed anchors only: cannot express digit shapes",
            ),
        )
    except ImportError:
        results.append(EngineResult("pyahocorasick", 0.0, 0, "not installed (extra 'bench')"))
    # Passes taken in turn, so that the load of a shared machine falls on all alike.
    best = [float("inf")] * len(timed)
    for _ in range(repeats):
        for n, (result, run) in enumerate(timed):
            started = time.perf_counter()
            result.matches = run()
            best[n] = min(best[n], time.perf_counter() - started)
    for n, (result, _) in enumerate(timed):
        result.docs_per_second = len(texts) / best[n]
    return results
