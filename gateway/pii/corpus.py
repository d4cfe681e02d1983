"""A labelled corpus for measuring detectors: generated, never taken from any register.

Norwegian sentences carrying valid identifiers of every type (in the written
forms people use: spaces, dots, inside words and URLs) and near-misses that
must not be reported: a wrong check digit, the right length but the wrong
kind of number (dates, order ids, impossible birth dates), and identifiers
inside longer numbers. Every label is computed from how the value was built
and checked with python-stdnum directly, never by the detector under test.

The same corpus (same seed, same documents) feeds the tests' precision and
recall table and the benchmark in bench/pii.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from stdnum import iban as stdnum_iban
from stdnum import luhn as stdnum_luhn
from stdnum.no import fodselsnummer as stdnum_fnr
from stdnum.no import kontonr as stdnum_kontonr
from stdnum.no import orgnr as stdnum_orgnr

from gateway.pii.findings import PII_TYPES, PiiType


@dataclass(frozen=True, slots=True)
class Label:
    """A span of a corpus document that holds personal data of `type`."""

    start: int
    end: int
    type: PiiType
    synthetic: bool = False


@dataclass(slots=True)
class Document:
    """One corpus text and the personal data in it (empty for pure near-miss texts)."""

    text: str
    labels: list[Label] = field(default_factory=list)
    # Which near-miss kinds (if any) the text carries, for reporting.
    near_misses: list[str] = field(default_factory=list)


# Plate letters in use (Norwegian plates skip G I M O Q W Æ Ø Å).
_PLATE_LETTERS: Final = "ABCDEFHJKLNPRSTUVXYZ"
_FIRST_NAMES: Final = (
    "Kari",
    "Ola",
    "Bjørn",
    "Åse",
    "Ærlend",
    "Siri",
    "Øystein",
    "Jørgen",
    "Mette",
)
_LAST_NAMES: Final = ("Nordmann", "Hansen", "Sæther", "Østby", "Løvås", "Berg", "Dahl", "Ødegård")
_DOMAINS: Final = (
    "nav.no",
    "uio.no",
    "gmail.com",
    "firma.no",
    "sykehuset-innlandet.no",
    "posten.no",
)
_ASCII: Final = str.maketrans({"æ": "ae", "ø": "o", "å": "a", "Æ": "Ae", "Ø": "O", "Å": "A"})

# Sentences with a slot `{}` for one value, and the types each is meant for.
_TEMPLATES: Final[dict[str, tuple[str, ...]]] = {
    "personal": (
        "Fødselsnummeret til {name} er {}, ifølge Folkeregisteret.",
        "Pasienten ({name}, {}) ble overført til Ullevål i går.",
        "Søknad mottatt fra person med id {} – behandles innen tre uker.",
        "Se https://minside.example.no/bruker?fnr={}&språk=nb for detaljer.",
        "fnr{} registrert på nytt etter flytting til Tromsø.",
        "«Identitet bekreftet: {}» skrev saksbehandleren på Lillehammer.",
    ),
    "organisasjonsnummer": (
        "Leverandøren {name} AS har organisasjonsnummer {} i Brønnøysundregistrene.",
        "Faktura fra org.nr. {} MVA, forfall om 14 dager.",
        "Se https://w2.brreg.example.no/enhet/sok/detalj.jsp?orgnr={}",
    ),
    "kontonummer": (
        "Beløpet overføres til kontonummer {} innen fredag.",
        "Kontonr.: {} (DNB), mottaker {name}.",
        "Lønn utbetales til konto {} hver måned.",
    ),
    "iban": (
        "Betal til IBAN {} med BIC DNBANOKK.",
        "Utenlandsbetaling: mottakers IBAN er {}, referanse «husleie».",
    ),
    "payment_card": (
        "Kortnummer {} ble brukt på Værnes i går kveld.",
        "Kunden oppga kort {} ved bestilling av ferjebillett.",
    ),
    "email": (
        "Send svaret til {} før møtet på Gjøvik.",
        "Kontakt: {name} <{}>, avdeling for økonomi.",
        "Lenke: mailto:{}?subject=Søknad",
    ),
    "phone": (
        "Ring {name} på {} etter klokka åtte.",
        "Tlf. {} (sentralbord), åpent hverdager.",
        "Kundeservice svarer på {} – også på lørdager.",
    ),
    "ip_address": (
        "Innlogging fra {} ble blokkert av brannmuren.",
        "Forespørselen kom fra IP-adresse {} kl. 03:14.",
        "Se http://{}/admin for ruteren i første etasje.",
    ),
    "vehicle_plate": (
        "Bilen med registreringsnummer {} sto parkert på Torget.",
        "Fotoboks i Ålesund registrerte {} i 92 km/t.",
    ),
}

# Sentences that carry a near-miss value: it must not be reported.
_NEAR_MISS_TEMPLATES: Final = (
    "Ordrenummer {} er sendt fra lageret på Gardermoen.",
    "Saksnummer {} gjelder klagen på vedtaket.",
    "Referanse: {} – oppgis ved all kontakt.",
    "Beløp kr {} er trukket fra budsjettet til kommunen.",
)

# Texts with numbers that look like identifiers but are not personal data.
_PLAIN_TEXTS: Final = (
    "Møtet er flyttet til 15.03.2024 kl. 14:30 i Rådhusgata 5, 0151 Oslo.",
    "Versjon 3 av rapporten har 2 417 sider og 12 vedlegg.",
    "Temperaturen på Røros falt til -37,5 grader natt til 20240115.",
    "Prosjektet kostet 1 234 567 kroner, ifølge årsmeldingen for 2023.",
    "Tog 2157 fra Bergen er forsinket 12 minutter på grunn av snø.",
    "Ærlig talt, søsteren på Ørland har bodd i Åsgårdstrand siden 1998.",
    "ISO 27001 og NS 8407 gjelder for kontrakten; se punkt 4.2.1.",
    "Bruk std::vector og kl. 12:30:45 som tidsstempel i loggen.",
)


class CorpusBuilder:
    """Generates valid identifiers, near-misses and the documents that carry them."""

    def __init__(self, seed: int = 2024) -> None:
        self.rng = random.Random(seed)

    # -- valid identifiers -------------------------------------------------------------

    def _birth(self) -> tuple[dt.date, str]:
        rng = self.rng
        while True:
            born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 80))
            if born.year < 2000:
                individual = (
                    rng.randrange(0, 500) if rng.random() < 0.8 else rng.randrange(900, 1000)
                )
                if individual >= 900 and born.year < 1940:
                    continue
            else:
                individual = rng.randrange(500, 1000)
            return born, f"{individual:03d}"

    def personal_number(self, kind: str, synthetic: bool = False) -> str:
        """A valid fødselsnummer, D-nummer or H-nummer (synthetic: month + 80)."""
        while True:
            born, individual = self._birth()
            day, month = born.day, born.month
            if kind == "d_nummer":
                day += 40
            elif kind == "h_nummer":
                month += 40
            if synthetic:
                month += 80
            base = f"{day:02d}{month:02d}{born.year % 100:02d}{individual}"
            k1 = stdnum_fnr.calc_check_digit1(base)
            if len(k1) != 1:
                continue
            k2 = stdnum_fnr.calc_check_digit2(base + k1)
            if len(k2) != 1:
                continue
            number = base + k1 + k2
            if not synthetic and not stdnum_fnr.is_valid(number):
                continue
            # Every one of these is also a valid account number (the second check digit
            # is the account mod-11); in a sentence about a person it is still an fnr.
            return number

    def orgnr(self, synthetic: bool = False) -> str:
        while True:
            first = self.rng.choice("23" if synthetic else "89")
            base = first + "".join(self.rng.choice("0123456789") for _ in range(7))
            number = _complete(base, stdnum_orgnr.is_valid)
            if number is not None:
                return number

    def kontonr(self) -> str:
        while True:
            base = f"{self.rng.randrange(1000, 9999)}{self.rng.randrange(10**6):06d}"
            number = _complete(base, stdnum_kontonr.is_valid)
            if number is not None and not _valid_personal(number):
                return number

    def iban(self) -> str:
        bban = self.kontonr()
        check = stdnum_iban.calc_check_digits("NO00" + bban)
        number = "NO" + check + bban
        assert stdnum_iban.is_valid(number)
        return number

    def card(self) -> str:
        rng = self.rng
        prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15)])
        body = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
        return body + stdnum_luhn.calc_check_digit(body)

    def email(self) -> str:
        first = self.rng.choice(_FIRST_NAMES).lower()
        last = self.rng.choice(_LAST_NAMES).lower()
        if self.rng.random() < 0.7:
            first, last = first.translate(_ASCII), last.translate(_ASCII)
        sep = self.rng.choice([".", "_", ""])
        number = str(self.rng.randrange(100)) if self.rng.random() < 0.3 else ""
        return f"{first}{sep}{last}{number}@{self.rng.choice(_DOMAINS)}"

    def phone(self) -> str:
        rng = self.rng
        mobile = f"{rng.choice('49')}{rng.randrange(0, 10_000_000):07d}"
        land = f"{rng.choice('2357')}{rng.randrange(0, 10_000_000):07d}"
        n = rng.choice([mobile, land])
        forms = [
            f"+47 {n[:2]} {n[2:4]} {n[4:6]} {n[6:]}",
            f"+47{n}",
            f"0047 {n[:3]} {n[3:5]} {n[5:]}",
            f"{n[:2]} {n[2:4]} {n[4:6]} {n[6:]}",
            f"{n[:3]} {n[3:5]} {n[5:]}",
            mobile,
            f"+46 70 {rng.randrange(100, 999)} {rng.randrange(10, 99)} {rng.randrange(10, 99)}",
            f"+44 20 {rng.randrange(1000, 9999)} {rng.randrange(1000, 9999)}",
        ]
        return rng.choice(forms)

    def ip(self) -> str:
        rng = self.rng
        if rng.random() < 0.7:
            octets = (
                rng.randrange(1, 224),
                rng.randrange(256),
                rng.randrange(256),
                rng.randrange(1, 255),
            )
            return ".".join(map(str, octets))
        groups = [f"{rng.randrange(0, 0x10000):x}" for _ in range(4)]
        return rng.choice(
            [
                f"2001:db8:{groups[0]}:{groups[1]}::{groups[2]}",
                f"fe80::{groups[0]}:{groups[1]}:{groups[2]}:{groups[3]}",
            ]
        )

    def plate(self) -> str:
        letters = self.rng.choice(_PLATE_LETTERS) + self.rng.choice(_PLATE_LETTERS)
        digits = f"{self.rng.randrange(10000, 100000)}"
        return f"{letters} {digits}" if self.rng.random() < 0.8 else letters + digits

    # -- written forms -----------------------------------------------------------------

    def _written_eleven(self, digits: str, kind: str) -> str:
        if kind == "kontonummer":
            return self.rng.choice(
                [
                    f"{digits[:4]}.{digits[4:6]}.{digits[6:]}",
                    f"{digits[:4]} {digits[4:6]} {digits[6:]}",
                    digits,
                ]
            )
        return self.rng.choice(
            [digits, digits, f"{digits[:6]} {digits[6:]}", f"{digits[:6]}-{digits[6:]}"]
        )

    # -- near-misses ------------------------------------------------------------------

    def wrong_check_digit(self) -> tuple[str, str]:
        """A value of an identifier shape whose check digit is wrong for every type."""
        kind = self.rng.choice(["personal", "orgnr", "kontonr", "iban", "card"])
        while True:
            if kind == "personal":
                good = self.personal_number(
                    self.rng.choice(["fodselsnummer", "d_nummer", "h_nummer"])
                )
            elif kind == "orgnr":
                good = self.orgnr()
            elif kind == "kontonr":
                good = self.kontonr()
            elif kind == "iban":
                good = self.iban()
            else:
                good = self.card()
            last = good[-1]
            bad = good[:-1] + self.rng.choice([d for d in "0123456789" if d != last])
            if not _valid_as_any(bad):
                return bad, f"wrong_check_digit:{kind}"

    def wrong_type(self) -> tuple[str, str]:
        """Right length, wrong kind: an IBAN of another country's length, mod-11-valid
        9 digits outside the organisation-number series, 8-digit dates, Luhn-valid
        numbers of no card scheme, 10-digit order ids, and order ids that pass the
        account or organisation-number mod-11 by chance, written bare with no word
        that makes them one."""
        rng = self.rng
        kind = rng.choice(
            [
                "iban_other_country",
                "orgnr_series",
                "date8",
                "luhn_no_scheme",
                "order_id",
                "account_checksum_order_id",
                "orgnr_checksum_order_id",
            ]
        )
        while True:
            if kind == "iban_other_country":
                # A Norwegian account behind another country's code: wrong length there.
                bban = self.kontonr()
                country = rng.choice(["DK", "SE", "DE", "GB"])
                value = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
            elif kind == "orgnr_series":
                base = rng.choice("14567") + "".join(rng.choice("0123456789") for _ in range(7))
                value = _complete(base, lambda n: stdnum_orgnr.checksum(n) == 0) or "0"
            elif kind == "date8":
                date = dt.date(1990, 1, 1) + dt.timedelta(days=rng.randrange(0, 12000))
                value = date.strftime("%Y%m%d")
            elif kind == "luhn_no_scheme":
                body = rng.choice("19") + "".join(rng.choice("0123456789") for _ in range(14))
                value = body + stdnum_luhn.calc_check_digit(body)
            elif kind == "account_checksum_order_id":
                # 11 digits that pass the account mod-11 by chance (one in eleven do),
                # written bare in a sentence about an order: not an account number.
                value = self.kontonr()
                return value, f"wrong_type:{kind}"
            elif kind == "orgnr_checksum_order_id":
                value = self.orgnr()
                return value, f"wrong_type:{kind}"
            else:
                value = f"{rng.randrange(10**9, 10**10)}"  # a 10-digit order id
            if not _valid_as_any(value):
                if kind == "date8" and value[0] in "49":
                    continue
                return value, f"wrong_type:{kind}"

    def inside_longer_number(self) -> tuple[str, str]:
        """A valid identifier with digits glued on: part of a longer number, not an id."""
        kind = self.rng.choice(["personal", "orgnr", "kontonr"])
        good = (
            self.personal_number("fodselsnummer")
            if kind == "personal"
            else self.orgnr()
            if kind == "orgnr"
            else self.kontonr()
        )
        while True:
            head = "".join(self.rng.choice("0123456789") for _ in range(self.rng.randrange(1, 3)))
            tail = "".join(self.rng.choice("0123456789") for _ in range(self.rng.randrange(0, 3)))
            value = head + good + tail
            if not _valid_as_any(value):
                return value, f"inside_longer_number:{kind}"

    # -- documents ---------------------------------------------------------------------

    def _fill(self, template: str, value: str) -> tuple[str, int]:
        name = f"{self.rng.choice(_FIRST_NAMES)} {self.rng.choice(_LAST_NAMES)}"
        head, tail = template.split("{}", 1)
        head = head.replace("{name}", name)
        tail = tail.replace("{name}", name)
        return head + value + tail, len(head)

    def valid_document(self, pii_type: PiiType, synthetic: bool = False) -> Document:
        rng = self.rng
        group = "personal" if pii_type in ("fodselsnummer", "d_nummer", "h_nummer") else pii_type
        value: str
        if group == "personal":
            value = self._written_eleven(self.personal_number(pii_type, synthetic), pii_type)
        elif pii_type == "organisasjonsnummer":
            digits = self.orgnr(synthetic)
            value = rng.choice([digits, f"{digits[:3]} {digits[3:6]} {digits[6:]}"])
        elif pii_type == "kontonummer":
            value = self._written_eleven(self.kontonr(), "kontonummer")
        elif pii_type == "iban":
            number = self.iban()
            value = rng.choice(
                [number, " ".join(number[i : i + 4] for i in range(0, len(number), 4))]
            )
        elif pii_type == "payment_card":
            number = self.card()
            if len(number) == 15:
                value = rng.choice([number, f"{number[:4]} {number[4:10]} {number[10:]}"])
            else:
                sep = rng.choice([" ", "-", ""])
                value = sep.join(number[i : i + 4] for i in range(0, 16, 4))
        elif pii_type == "email":
            value = self.email()
        elif pii_type == "phone":
            value = self.phone()
        elif pii_type == "ip_address":
            value = self.ip()
        else:
            value = self.plate()
        templates = _TEMPLATES[group]
        if pii_type == "ip_address" and ":" in value:
            templates = templates[:2]  # an IPv6 address in a URL needs brackets; keep it plain
        text, start = self._fill(rng.choice(templates), value)
        return Document(text, [Label(start, start + len(value), pii_type, synthetic)])

    def near_miss_document(self) -> Document:
        maker: Callable[[], tuple[str, str]] = self.rng.choice(
            [self.wrong_check_digit, self.wrong_type, self.inside_longer_number]
        )
        value, kind = maker()
        text, _ = self._fill(self.rng.choice(_NEAR_MISS_TEMPLATES), value)
        return Document(text, [], [kind])

    def documents(self, count: int) -> Iterator[Document]:
        """`count` documents: per type an equal share of valid ones (some synthetic),
        plus near-misses (about a third) and plain texts, interleaved."""
        rng = self.rng
        for n in range(count):
            slot = n % 18
            if slot < 11:
                pii_type = PII_TYPES[slot]
                synthetic = (
                    pii_type in ("fodselsnummer", "d_nummer", "organisasjonsnummer")
                    and rng.random() < 0.25
                )
                yield self.valid_document(pii_type, synthetic)
            elif slot < 17:
                yield self.near_miss_document()
            else:
                yield Document(rng.choice(_PLAIN_TEXTS))

    def mixed_document(self, parts: int = 3) -> Document:
        """Several valid sentences joined into one text, labels shifted accordingly."""
        text = ""
        labels: list[Label] = []
        for _ in range(parts):
            doc = self.valid_document(self.rng.choice(PII_TYPES))
            offset = len(text) + (1 if text else 0)
            text = f"{text} {doc.text}" if text else doc.text
            labels.extend(
                Label(x.start + offset, x.end + offset, x.type, x.synthetic) for x in doc.labels
            )
        return Document(text, labels)


def _complete(base: str, is_valid: Callable[[str], bool]) -> str | None:
    """`base` plus the check digit that makes it valid under stdnum's rule, if one does."""
    for digit in "0123456789":
        if is_valid(base + digit):
            return base + digit
    return None


def _valid_personal(digits: str) -> bool:
    if len(digits) != 11 or not digits.isdigit():
        return False
    if stdnum_fnr.is_valid(digits):
        return True
    month = int(digits[2:4])
    if month > 80:
        return (
            stdnum_fnr.calc_check_digit1(digits) == digits[9]
            and stdnum_fnr.calc_check_digit2(digits) == digits[10]
        )
    return False


def _valid_as_any(digits: str) -> bool:
    """Whether a digit string (or IBAN) would be a valid identifier of any check-digit type."""
    if digits[:2].isalpha():
        return bool(stdnum_iban.is_valid(digits))
    if _valid_personal(digits) or (len(digits) == 11 and stdnum_kontonr.is_valid(digits)):
        return True
    if len(digits) == 9 and digits[0] in "8923" and stdnum_orgnr.is_valid(digits):
        return True
    if 12 <= len(digits) <= 19 and stdnum_luhn.is_valid(digits) and digits[0] in "23456":
        return True
    return len(digits) == 8 and digits[0] in "49"  # would read as a mobile number


def corpus(count: int = 3000, seed: int = 2024) -> list[Document]:
    """The standard corpus: `count` documents, deterministic for a seed."""
    return list(CorpusBuilder(seed).documents(count))
