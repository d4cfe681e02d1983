"""The detector: one regex pass for candidates, then validation by type.

`Detector().scan(text)` returns the personal data found in a text as
`Finding`s with character offsets; `scan_json(obj)` does the same for every
string value of a JSON document at any depth, with dotted paths.

Bare numbers that only a mod-11 vouches for need a word: an 11-digit number
that is not a valid personal number is a kontonummer when written in the
account grouping (1234.56.78903) or after "konto"/"account" in the same
sentence or field name; a contiguous 9-digit number is an organisation number
after "org"/"foretak"/"enhet"/"mva" (the 123 456 789 grouping needs none).
One random order id in eleven passes a mod-11; these rules keep them out.

Engine choice, measured on the labelled corpus (`python -m bench.pii` prints
the current numbers; the reasoning is in bench/pii/engines.py): Python `re`
with this one alternation is kept, as the fastest way to these candidates.
google-re2 was slower and has no look-behind. Hyperscan's raw pass is 1.4-2.5x
faster but reports every overlapping match end, without the boundary checks,
in byte offsets; turning that into the same candidates (re.match at each
start it reports) ran at 0.65-1.0x of re, and a long digit run costs it one
Python callback per match end (400,000 for 100,000 digits). pyahocorasick
matches fixed strings only. The whole detector runs at 2.2-2.4x the time of
the bare `re` pass (the floor).

The gateway's compiled fast path has its own port of `scan` (no context, every
type: native/src/detector.rs), held to this one by tests; this module stays
the reference and scans what the port defers.

Limits (documented, enforced): a JSON document nested deeper than
`max_json_depth` (default 512) raises ScanLimitError naming the path; texts
have no length limit, since every branch of the pattern is bounded and can
only start at the beginning of a run, which keeps the scan linear.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from gateway.pii.errors import ScanLimitError
from gateway.pii.findings import PII_TYPES, Finding, PiiType
from gateway.pii.identifiers import (
    classify_eleven,
    classify_organisasjonsnummer,
    is_iban,
    is_ip_address,
    is_payment_card,
)
from gateway.pii.patterns import CANDIDATES

# fjordgate's own output tokens, exactly as gateway.pii writes them: a pseudonym
# (32-byte HMAC, unpadded base64url) or a ciphertext, under a key id "k" + 12 hex.
# Their random key ids and bodies can hold digit runs that look like a phone
# number or a plate; scanning minimised output (`pii scan` of a topic) must not
# report them. Only this exact shape is skipped, so free text cannot hide a
# number in a loosely token-like string.
_OWN_TOKEN: Final = re.compile(
    r"(?<![A-Za-z0-9_-])(?:ps1:k[0-9a-f]{12}:[A-Za-z0-9_-]{43}"
    r"|enc1:k[0-9a-f]{12}:[A-Za-z0-9_-]{38,})(?![A-Za-z0-9_-])"
)

DEFAULT_MAX_JSON_DEPTH: Final = 512

# Characters of an e-mail local part (RFC 5322 atext and dots, plus letters such as æøå).
_LOCAL_PART_SYMBOLS: Final = frozenset("!#$%&'*+-/=?^_`{|}~.")
_LOCAL_PART_MAX: Final = 64
# How far before a bare number to look for words that say what it is.
_CONTEXT_CHARS: Final = 40
# Words that make a bare number an account or organisation number. Without them (or
# the written grouping of those numbers) a bare 11- or 9-digit number is not reported
# unless it is a valid personal number: one random order id in eleven passes a mod-11.
_ACCOUNT_WORDS: Final = ("konto", "account", "kto")
_SENTENCE_END: Final = re.compile(r"[.!?]\s+(?=[A-ZÆØÅ])|\n")
_ORGANISATION_WORDS: Final = ("org", "foretak", "enhet", "mva", "brreg", "brønnøysund")
# Every candidate holds a digit, an '@' or a ':' within its first five characters (see
# the branches in patterns.py): a text without one has no candidate, and none starts
# more than four characters before the first. Skipping to there saves the pattern's
# work on the text before it (the prose of most free-text fields); measured in bench/gateway.
_ANCHOR: Final = re.compile(r"[0-9@:]")
_ANCHOR_LEAD: Final = 4
_anchor: Final = _ANCHOR.search
_candidate: Final = CANDIDATES.search


def candidates(text: str) -> Iterator[re.Match[str]]:
    """The candidate pattern's matches in `text`, as `CANDIDATES.finditer(text)` finds them."""
    # From one anchor to the next: after a match the pattern resumes four characters
    # before the next anchor, or stops when there is none, instead of trying every
    # position of the prose between and after the candidates; and `search` per match
    # has none of `finditer`'s fixed cost. Measured on the synthetic notes: 2.5 -> 1.3 µs
    # for a text with one phone number (property-tested against `finditer`).
    anchor = _anchor(text)
    end = 0
    while anchor is not None:
        # Look-behinds still see the text before the start position.
        match = _candidate(text, max(end, anchor.start() - _ANCHOR_LEAD))
        if match is None:
            return
        yield match
        end = match.end()
        anchor = _anchor(text, end)


def _only_digits(text: str) -> str:
    """The digits of a candidate (its separators are only spaces, dots, dashes, plus)."""
    # Four replaces, not str.translate: 0.2 µs against 0.4-0.9 µs per candidate (measured).
    return text.replace(" ", "").replace(".", "").replace("-", "").replace("+", "")


def _says(text: str, start: int, context: str, words: tuple[str, ...]) -> bool:
    """Whether one of `words` comes shortly before `start` in the same sentence, or in
    the context (a field name)."""
    if context and any(word in context.lower() for word in words):
        return True
    before = text[max(0, start - _CONTEXT_CHARS) : start]
    lowered = before.lower()
    if not any(word in lowered for word in words):
        return False  # the common case, decided without finding sentence ends
    # A sentence ends at a full stop, "!" or "?" before a capital, or a newline; the dot
    # of an abbreviation ("org.nr. 974 760 673") is no end.
    boundaries = [m.end() for m in _SENTENCE_END.finditer(before)]
    # A word speaks for the first number after it, not for one after that.
    last_digit = max(before.rfind(digit) for digit in "0123456789")
    since = max(boundaries[-1] if boundaries else 0, last_digit + 1)
    near = before[since:].lower()
    return any(word in near for word in words)


class Detector:
    """Finds personal data of the given types (all by default) in text and JSON."""

    __slots__ = ("_max_json_depth", "_types")

    def __init__(
        self,
        types: Iterable[str] | None = None,
        *,
        max_json_depth: int = DEFAULT_MAX_JSON_DEPTH,
    ) -> None:
        wanted = set(PII_TYPES if types is None else types)
        unknown = wanted - set(PII_TYPES)
        if unknown:
            raise ValueError(
                f"unknown PII type(s) {sorted(unknown)}; known types: {', '.join(PII_TYPES)}"
            )
        self._types: frozenset[str] = frozenset(wanted)
        self._max_json_depth = max_json_depth

    @property
    def types(self) -> frozenset[str]:
        return self._types

    def scan(self, text: str, *, context: str = "") -> list[Finding]:
        """Every finding in `text`, in order, offsets in characters; never overlapping.

        `context` is read like the words before each candidate (scan_json passes
        the field's name): "kontonummer" or "orgnr" there makes a bare number an
        account or organisation number.
        """
        findings: list[Finding] = []
        types = self._types
        matches = candidates(text)
        own_tokens = (
            [m.span() for m in _OWN_TOKEN.finditer(text)]
            if "ps1:" in text or "enc1:" in text
            else ()
        )
        for match in matches:
            shape = match.lastgroup
            start, end = match.span()
            if own_tokens and any(a <= start < b for a, b in own_tokens):
                continue
            found: PiiType
            synthetic = False
            if shape == "eleven":
                written = match.group()
                verdict, account = classify_eleven(_only_digits(written))
                # Every valid personal number also passes the account mod-11 (its second
                # check digit uses the same weights), and so does one random 11-digit
                # number in eleven: the account grouping (1234.56.78903, 1234 56 78903)
                # or an account word just before makes it an account number.
                if account and (len(written) == 13 or _says(text, start, context, _ACCOUNT_WORDS)):
                    verdict = ("kontonummer", False)
                if verdict is None:
                    continue
                found, synthetic = verdict
            elif shape == "nine":
                written = match.group()
                verdict = classify_organisasjonsnummer(_only_digits(written))
                if verdict is None or (
                    len(written) == 9 and not _says(text, start, context, _ORGANISATION_WORDS)
                ):
                    continue
                found, synthetic = verdict
            elif shape == "email":
                start = self._local_part_start(text, start)
                if start < 0:
                    continue
                # The local part may hold a candidate already reported (a number, a
                # plate): the address as a whole is the finding.
                while findings and findings[-1].end > start:
                    findings.pop()
                found = "email"
            elif shape == "phone_local":
                digits = _only_digits(match.group())
                first = digits[0]
                if first in "01" or (" " not in match.group() and first not in "49"):
                    # Only mobile numbers (4xx, 9xx) are told from other 8-digit numbers
                    # (dates, order ids) without their grouping.
                    continue
                found = "phone"
            elif shape == "phone_intl":
                written = match.group()
                digits = _only_digits(written)
                if written.startswith("00"):
                    digits = digits[2:]
                if digits.startswith("47") and len(digits) == 10:
                    if digits[2] in "01":
                        continue
                elif not 8 <= len(digits) <= 15 or (
                    # "00" and a run of digits is as likely an amount or an id: other
                    # countries after 00 only when grouped.
                    written.startswith("00") and " " not in written and "-" not in written
                ):
                    continue
                found = "phone"
            elif shape == "card":
                if not is_payment_card(_only_digits(match.group())):
                    continue
                found = "payment_card"
            elif shape == "iban":
                if not is_iban(match.group().replace(" ", "")):
                    continue
                found = "iban"
            elif shape == "ipv4":
                if not is_ip_address(match.group()):
                    continue
                found = "ip_address"
            elif shape == "ipv6":
                candidate = match.group()
                stripped = candidate.rstrip(".")
                if stripped.count(":") < 2 or not is_ip_address(stripped):
                    continue
                end -= len(candidate) - len(stripped)
                found = "ip_address"
            else:  # plate
                found = "vehicle_plate"
            if found in types:
                findings.append(Finding(start, end, found, synthetic))
        return findings

    @staticmethod
    def _local_part_start(text: str, at: int) -> int:
        """Where the local part before the '@' at `at` starts, or -1 if there is none."""
        i = at
        lowest = max(0, at - _LOCAL_PART_MAX)
        while i > lowest:
            c = text[i - 1]
            if c.isalnum() or c in _LOCAL_PART_SYMBOLS:
                i -= 1
            else:
                break
        # A local part neither starts nor ends with a dot.
        while i < at and text[i] == ".":
            i += 1
        if i == at or text[at - 1] == ".":
            return -1
        return i

    def scan_json(self, obj: Any) -> list[tuple[str, Finding]]:
        """Findings in every string value of a JSON document, with dotted paths.

        Paths join object keys and list indices with dots (`order.items.3.note`);
        object keys themselves are not scanned (they are schema, not data).
        Nesting deeper than `max_json_depth` raises ScanLimitError.
        """
        return [
            (path, f)
            for path, text in self.strings(obj)
            for f in self.scan(text, context=path.rpartition(".")[2])
        ]

    def strings(self, obj: Any) -> Iterator[tuple[str, str]]:
        """Every string value of a JSON document with its dotted path, in document
        order. Iterative, so deep documents cannot exhaust the Python stack;
        deeper than `max_json_depth` raises ScanLimitError naming the path."""
        stack: list[tuple[str, Any, int]] = [("", obj, 0)]
        limit = self._max_json_depth
        while stack:
            path, value, depth = stack.pop()
            if isinstance(value, str):
                yield path, value
            elif isinstance(value, Mapping | list | tuple):
                if depth >= limit:
                    raise ScanLimitError(
                        f"JSON nested deeper than {limit} levels at {path or '<root>'}; "
                        "flatten the document or raise max_json_depth"
                    )
                items = (
                    list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
                )
                for key, child in reversed(items):
                    stack.append((f"{path}.{key}" if path else str(key), child, depth + 1))

    def types_by_field(self, obj: Any) -> dict[str, tuple[PiiType, ...]]:
        """The PII types found per dotted field path: the `detected` argument of
        `policies.PolicyEngine.decide` (types in order of first appearance)."""
        found: dict[str, list[PiiType]] = {}
        for path, finding in self.scan_json(obj):
            kinds = found.setdefault(path, [])
            if finding.type not in kinds:
                kinds.append(finding.type)
        return {path: tuple(kinds) for path, kinds in found.items()}

    def __repr__(self) -> str:
        return f"Detector(types={sorted(self._types)})"
