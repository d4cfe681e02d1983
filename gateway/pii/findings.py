"""What a detector reports: a typed span of a text, without the value itself."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, get_args

PiiType = Literal[
    "fodselsnummer",
    "d_nummer",
    "h_nummer",
    "organisasjonsnummer",
    "kontonummer",
    "iban",
    "payment_card",
    "email",
    "phone",
    "ip_address",
    "vehicle_plate",
]

# In the order of the Literal above: the one list of type names, as the output names them.
PII_TYPES: Final[tuple[PiiType, ...]] = get_args(PiiType)

# Types whose validity is decided by a check digit (mod-11, mod-97, Luhn).
CHECK_DIGIT_TYPES: Final[frozenset[str]] = frozenset(
    {
        "fodselsnummer",
        "d_nummer",
        "h_nummer",
        "organisasjonsnummer",
        "kontonummer",
        "iban",
        "payment_card",
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    """A span `[start, end)` of a text, in characters, holding personal data of `type`.

    `synthetic` marks identifiers from Norway's synthetic test population
    (month + 80 in a fødselsnummer or D-nummer, organisation numbers starting
    with 2 or 3), which are not personal data but are still reported so that
    test traffic is visible.
    """

    start: int
    end: int
    type: PiiType
    synthetic: bool = False

    def to_record(self) -> dict[str, object]:
        """The audit- and log-safe form: offsets and type, never the value."""
        return {
            "start": self.start,
            "end": self.end,
            "type": self.type,
            "synthetic": self.synthetic,
        }
