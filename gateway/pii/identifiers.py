"""Check-digit validation and classification of identifier candidates.

python-stdnum decides where it covers the identifier: the twin mod-11 check
digits and birth date of a fødselsnummer (and D-/H-nummer, which stdnum
accepts), organisasjonsnummer mod-11, kontonummer mod-11, IBAN mod-97 with
the country's format, and Luhn for payment cards.

Where stdnum stops short we add the rule ourselves, and say so:

- Synthetic identities of Norway's test population (Skatteetaten's synthetic
  Folkeregister, searched with Tenor) add 80 to the month. stdnum's
  `fodselsnummer.validate` subtracts only 40 (the H-nummer rule) and so
  rejects them as impossible dates. We check the same twin check digits with
  stdnum's own `calc_check_digit1/2`, then ask stdnum's `get_birth_date`
  about the number with the month put back (month - 80), which keeps its
  century and calendar rules.
- The synthetic Enhetsregister in the same test environment issues
  organisation numbers starting with 2 or 3 (real ones start with 8 or 9);
  stdnum's mod-11 applies to both, we label the first kind synthetic.
- An older convention (NAV's Dolly) marks synthetic persons with month + 40,
  which is also the H-nummer rule: we cannot tell the two apart from the
  number, so such numbers are reported as `h_nummer`, not synthetic.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from typing import Final

from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn
from stdnum.exceptions import ValidationError
from stdnum.no import fodselsnummer as stdnum_fnr
from stdnum.no import kontonr as stdnum_kontonr
from stdnum.no import orgnr as stdnum_orgnr

from gateway.pii.findings import PiiType

Verdict = tuple[PiiType, bool] | None  # (type, synthetic) or not an identifier

_SYNTHETIC_MONTH: Final = 80


def fnr_check_digits_ok(digits: str) -> bool:
    """The twin mod-11 check digits of an 11-digit personal number (stdnum's rule)."""
    return (
        stdnum_fnr.calc_check_digit1(digits) == digits[9]
        and stdnum_fnr.calc_check_digit2(digits) == digits[10]
    )


def classify_personal_number(digits: str) -> Verdict:
    """Fødselsnummer, D-nummer (day + 40), H-nummer (month + 40), each possibly synthetic.

    `digits` is 11 ASCII digits. Returns None unless both check digits are
    right and the birth date (with its century from the individual number)
    is a real date not in the future.
    """
    if not fnr_check_digits_ok(digits):
        return None
    day = int(digits[0:2])
    month = int(digits[2:4])
    synthetic = month > _SYNTHETIC_MONTH
    if synthetic:
        # stdnum would read month 81-92 as an H-number month and reject it; put the
        # real month back and let stdnum check the date on that form.
        restored = f"{digits[0:2]}{month - _SYNTHETIC_MONTH:02d}{digits[4:]}"
        try:
            born = stdnum_fnr.get_birth_date(restored)
        except ValidationError:
            return None
        if born > dt.date.today():
            return None
    elif not stdnum_fnr.is_valid(digits):
        return None
    if day > 40:
        return ("d_nummer", synthetic)
    if month > 40 and not synthetic:
        return ("h_nummer", False)
    return ("fodselsnummer", synthetic)


def is_kontonummer(digits: str) -> bool:
    """An 11-digit Norwegian bank account number with a valid mod-11 check digit."""
    return bool(stdnum_kontonr.is_valid(digits))


def classify_organisasjonsnummer(digits: str) -> Verdict:
    """A 9-digit organisation number: mod-11 (stdnum), starting 8/9, or 2/3 if synthetic."""
    first = digits[0]
    if first not in "8923" or not stdnum_orgnr.is_valid(digits):
        return None
    return ("organisasjonsnummer", first in "23")


def is_iban(compact: str) -> bool:
    """An IBAN (no spaces, upper case) with a valid mod-97 and its country's format."""
    return bool(stdnum_iban.is_valid(compact))


# Issuer prefixes (IIN) and lengths of the card schemes in use; Luhn alone passes one
# random number in ten, so the prefix keeps order numbers and the like out.
_CARD_PREFIXES: Final[tuple[tuple[str, str, frozenset[int]], ...]] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("6011", "6011", frozenset({16, 17, 18, 19})),  # Discover
    ("644", "649", frozenset({16, 17, 18, 19})),
    ("65", "65", frozenset({16, 17, 18, 19})),
    ("3528", "3589", frozenset({16, 17, 18, 19})),  # JCB
    ("300", "305", frozenset({14, 15, 16, 17, 18, 19})),  # Diners Club
    ("36", "36", frozenset({14, 15, 16, 17, 18, 19})),
    ("38", "39", frozenset({16, 17, 18, 19})),
    ("50", "50", frozenset(range(12, 20))),  # Maestro
    ("56", "58", frozenset(range(12, 20))),
    ("67", "67", frozenset(range(12, 20))),
)


def is_payment_card(digits: str) -> bool:
    """A card number of a known scheme's prefix and length with a valid Luhn digit."""
    length = len(digits)
    for low, high, lengths in _CARD_PREFIXES:
        head = digits[: len(low)]
        if low <= head <= high and length in lengths:
            return bool(stdnum_luhn.is_valid(digits))
    return False


def is_ip_address(text: str) -> bool:
    """An IPv4 or IPv6 address as the ipaddress module reads it."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
