"""The candidate pattern: one regular expression whose named branches find every shape.

Candidates are shapes, not verdicts: an 11-digit run may be a fødselsnummer,
a D- or H-nummer or a kontonummer, and only its check digits decide. The
detector runs this pattern once over a text and validates each candidate.
The same pattern, unvalidated, is the benchmark's floor.

Every branch starts with a consuming character class and asserts its left
boundary with a fixed-width look-behind *after* that first character, so the
regex engine can skip ahead on the set of possible first characters (sre's
charset prefix). Every repetition is bounded, and a branch can only start at
the beginning of a run (digits, letters), so a megabyte of digits or letters
is scanned in linear time.

Boundaries: digits may touch letters (`fnr01019012345`, `?id=...&`) but not
other digits, nor a digit across a single dot (`1.5`), so identifiers inside
longer numbers are not candidates.
"""

from __future__ import annotations

import re
from typing import Final

# Left boundary of a digit-led branch, written after its first digit: the character
# before that digit is no digit, and not a dot that follows a digit.
_DIGIT_START: Final = r"[0-9](?<![0-9][0-9])(?<![0-9][.][0-9])"
# Right boundary of every digit-ended branch: no digit next, nor a dot and a digit.
_DIGIT_END: Final = r"(?![.]?[0-9])"

# A necessary condition of the international phone's other-country part, checked first:
# its 2-24 digits after the country code can end where _DIGIT_END holds. Without it a
# long digit run after "+1 " made the groups below try every split of the run before
# failing (0.36 s for 44,000 characters of "+1 " and 40 digits, repeated: 8 µs per
# character, so a minute for a body of 8 MiB); with it the branch fails in a few steps.
# It only rejects starts the branch would reject too (its digits and separators are a
# superset of the groups'), so the candidates are the same (tests/pii).
_PHONE_INTL_CAN_END: Final = r"(?=[1-9][0-9]{0,3}(?:[ -]?[0-9]){2,24}(?![.]?[0-9]))"

BRANCHES: Final[dict[str, str]] = {
    # IBAN: country letters, check digits, 11-30 alphanumerics, grouped by 4 or not.
    "iban": (
        r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z][0-9]{2}"
        r"(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,3})?(?![A-Za-z0-9])"
    ),
    # Norwegian plate: two letters (not G I M O Q W Æ Ø Å, which plates do not use),
    # then 5 digits (10000-99999), with or without a space.
    "plate": (
        r"[A-FHJ-LNPR-VX-Z](?<![A-Za-z0-9ÆØÅæøå][A-Z])[A-FHJ-LNPR-VX-Z][ ]?[1-9][0-9]{4}"
        + _DIGIT_END
    ),
    # Phone with an international prefix: +47 / 0047 and a Norwegian 8-digit number in
    # the usual groupings, or another country code and 6-14 more digits.
    "phone_intl": (
        r"(?:\+(?<![0-9A-Za-z]\+)|0(?<![0-9.]0)0)"
        r"(?:47[ ]?(?:[0-9]{8}|[0-9]{2}(?:[ ][0-9]{2}){3}|[0-9]{3}[ ][0-9]{2}[ ][0-9]{3})"
        r"|(?!47)" + _PHONE_INTL_CAN_END + r"[1-9][0-9]{0,3}(?:[ -]?[0-9]{1,4}){2,6})" + _DIGIT_END
    ),
    # Payment card: 13-19 digits, contiguous or in groups of 4 (or Amex 4-6-5).
    "card": (
        _DIGIT_START + r"[0-9]{3}"
        r"(?:[0-9]{9,15}|[ ][0-9]{4}[ ][0-9]{4}[ ][0-9]{1,7}|-[0-9]{4}-[0-9]{4}-[0-9]{1,7}"
        r"|[ ][0-9]{6}[ ][0-9]{5})" + _DIGIT_END
    ),
    # 11 digits: fødselsnummer family (010190 12345) or kontonummer (1234.56.78903).
    "eleven": (
        _DIGIT_START + r"[0-9]{3}"
        r"(?:[0-9]{2}[ -]?[0-9]{5}|[.][0-9]{2}[.][0-9]{5}|[ ][0-9]{2}[ ][0-9]{5})" + _DIGIT_END
    ),
    # 9 digits: organisasjonsnummer (123456789, 123 456 789).
    "nine": _DIGIT_START + r"[0-9]{2}(?:[0-9]{6}|[ ][0-9]{3}[ ][0-9]{3})" + _DIGIT_END,
    # IPv4 dotted quad.
    "ipv4": _DIGIT_START + r"[0-9]{0,2}(?:[.][0-9]{1,3}){3}" + _DIGIT_END,
    # Norwegian phone without prefix: 8 digits, contiguous or grouped 2-2-2-2 / 3-2-3.
    "phone_local": (
        _DIGIT_START + r"(?<![+][0-9])[0-9]"
        r"(?:[0-9]{6}|(?:[ ][0-9]{2}){3}|[0-9][ ][0-9]{2}[ ][0-9]{3})" + _DIGIT_END
    ),
    # IPv6: hex digits and colons with a colon among the first five characters, so that
    # ordinary words starting with a-f are no candidates; the ipaddress module decides.
    "ipv6": (
        r"[0-9A-Fa-f:](?<![0-9A-Za-z:.][0-9A-Fa-f:])[0-9A-Fa-f]{0,3}:[0-9A-Fa-f:.]{1,41}"
        r"(?![0-9A-Za-z:])"
    ),
    # E-mail: the '@' and the domain; the detector extends the local part leftwards,
    # which keeps the pattern from trying every word as the start of an address.
    "email": (
        r"@(?=[A-Za-z0-9ÆØÅæøå])(?:[A-Za-z0-9ÆØÅæøå-]{1,63}[.]){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9-])"
    ),
}

# Every branch starts with one of these characters. sre does not derive a first-character
# set from an alternation of groups, so without this look-ahead it tries all ten branches
# at every position; with it, most positions of prose fail one set test. Measured on the
# corpus: 2.0-2.2x faster (62-69k -> 137k documents/s), and a megabyte of spaces 17x faster.
FIRST_CHARACTERS: Final = "[0-9A-Za-f+@:]"

CANDIDATE_SOURCE: Final = (
    f"(?={FIRST_CHARACTERS})(?:"
    + "|".join(f"(?P<{name}>{body})" for name, body in BRANCHES.items())
    + ")"
)
CANDIDATES: Final = re.compile(CANDIDATE_SOURCE)
