"""Detection quality on the generated labelled corpus, and the written forms identifiers take."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from stdnum.no import fodselsnummer as stdnum_fnr

from gateway.pii import CHECK_DIGIT_TYPES, PII_TYPES, Detector, Finding
from gateway.pii.corpus import CorpusBuilder, Document, corpus


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0


def _score(docs: list[Document], detector: Detector) -> tuple[dict[str, Score], int]:
    scores = {t: Score() for t in PII_TYPES}
    synthetic_mislabelled = 0
    for doc in docs:
        found = {(f.start, f.end, f.type): f for f in detector.scan(doc.text)}
        gold = {(g.start, g.end, g.type): g for g in doc.labels}
        for key, finding in found.items():
            if key in gold:
                scores[key[2]].tp += 1
                synthetic_mislabelled += finding.synthetic != gold[key].synthetic
            else:
                scores[key[2]].fp += 1
        for key in gold.keys() - found.keys():
            scores[key[2]].fn += 1
    return scores, synthetic_mislabelled


def _table(scores: dict[str, Score]) -> str:
    lines = [
        "| type | tp | fp | fn | precision | recall |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, s in scores.items():
        lines.append(f"| {name} | {s.tp} | {s.fp} | {s.fn} | {s.precision:.4f} | {s.recall:.4f} |")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def labelled_corpus() -> list[Document]:
    docs = corpus(3300, seed=5)
    builder = CorpusBuilder(seed=55)
    docs.extend(builder.mixed_document() for _ in range(300))
    return docs


def test_precision_and_recall_per_type_on_the_labelled_corpus(
    labelled_corpus: list[Document], capsys: pytest.CaptureFixture[str]
) -> None:
    scores, synthetic_mislabelled = _score(labelled_corpus, Detector())
    near_misses = Counter(k.split(":")[0] for d in labelled_corpus for k in d.near_misses)
    with capsys.disabled():
        print(f"\n\nPII detection on the labelled corpus ({len(labelled_corpus)} documents, ")
        print(f"near-misses: {dict(near_misses)})\n")
        print(_table(scores) + "\n")
    for name in PII_TYPES:
        assert scores[name].tp >= 100, f"corpus too thin for {name}"
        floor = 0.99 if name in CHECK_DIGIT_TYPES else 0.95
        assert scores[name].precision >= floor, (name, scores[name])
        assert scores[name].recall >= floor, (name, scores[name])
    assert synthetic_mislabelled == 0
    assert sum(near_misses.values()) >= 500


def test_near_misses_of_every_kind_are_not_reported() -> None:
    builder = CorpusBuilder(seed=11)
    detector = Detector()
    reported: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for maker in (builder.wrong_check_digit, builder.wrong_type, builder.inside_longer_number):
        for _ in range(300):
            value, kind = maker()
            seen[kind] += 1
            text = f"Referanse {value} gjelder saken på Åndalsnes."
            if detector.scan(text):
                reported[kind] += 1
    assert len(seen) >= 10  # every sub-kind was drawn
    assert reported == Counter(), reported


# -- written forms ------------------------------------------------------------------------

FNR = "15108695088"  # stdnum's documented example


def _spans(text: str, detector: Detector | None = None) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in (detector or Detector()).scan(text)]


@pytest.mark.parametrize(
    "written", ["15108695088", "151086 95088", "151086-95088"], ids=["bare", "space", "dash"]
)
def test_fodselsnummer_in_its_written_forms(written: str) -> None:
    assert _spans(f"Fnr: {written}.") == [("fodselsnummer", written)]


@pytest.mark.parametrize(
    "text",
    [
        f"https://minside.example.no/person?fnr={FNR}&lang=nb",
        f"fnr{FNR}",
        f"id={FNR};",
        f'{{"note": "pasient {FNR}"}}',
        f"«{FNR}»",
    ],
)
def test_identifiers_inside_words_and_urls(text: str) -> None:
    assert _spans(text) == [("fodselsnummer", FNR)]


@pytest.mark.parametrize(
    "text",
    [f"1{FNR}", f"{FNR}0", f"12{FNR}34", f"3.{FNR}", f"{FNR}.5", f"00{FNR}"],
)
def test_identifiers_inside_longer_numbers_are_not_reported(text: str) -> None:
    assert _spans(text) == []


def test_offsets_are_characters_in_norwegian_text() -> None:
    text = f"Ærlige Øyvind på Ålesund-kontoret (Åsgårdstrand) har fnr {FNR} – ikke sant?"
    (finding,) = Detector().scan(text)
    assert text[finding.start : finding.end] == FNR
    assert finding.start == text.index(FNR)


def test_account_number_forms_and_the_word_konto_decide_between_fnr_and_account() -> None:
    # Every valid fnr is also a valid kontonummer (same mod-11 as its second check digit).
    assert _spans(f"kontonummer {FNR}") == [("kontonummer", FNR)]
    assert _spans("til 1510.86.95088 i dag") == [("kontonummer", "1510.86.95088")]
    assert _spans("til 1510 86 95088 i dag") == [("kontonummer", "1510 86 95088")]
    assert _spans(f"fødselsnummer {FNR}") == [("fodselsnummer", FNR)]
    # The word must be in the same sentence.
    assert _spans(f"Lønn til konto. Pasient {FNR}") == [("fodselsnummer", FNR)]


def test_d_h_and_synthetic_numbers_are_typed_and_labelled() -> None:
    builder = CorpusBuilder(seed=3)
    detector = Detector()
    for kind in ("fodselsnummer", "d_nummer", "h_nummer"):
        number = builder.personal_number(kind)
        assert detector.scan(f"id {number}") == [Finding(3, 14, kind, False)]  # type: ignore[arg-type]
    for kind in ("fodselsnummer", "d_nummer"):
        number = builder.personal_number(kind, synthetic=True)
        # stdnum rejects month + 80 as an impossible date: the reason we check it ourselves.
        assert not stdnum_fnr.is_valid(number)
        assert detector.scan(f"id {number}") == [Finding(3, 14, kind, True)]  # type: ignore[arg-type]


def test_synthetic_organisation_numbers_start_with_2_or_3() -> None:
    builder = CorpusBuilder(seed=4)
    real, test = builder.orgnr(), builder.orgnr(synthetic=True)
    assert Detector().scan(f"org {real}") == [Finding(4, 13, "organisasjonsnummer", False)]
    assert Detector().scan(f"org {test}") == [Finding(4, 13, "organisasjonsnummer", True)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("IBAN NO93 8601 1117 947 nå", [("iban", "NO93 8601 1117 947")]),
        ("IBAN NO9386011117947.", [("iban", "NO9386011117947")]),
        ("Visa 4111 1111 1111 1111!", [("payment_card", "4111 1111 1111 1111")]),
        ("kort 4111-1111-1111-1111", [("payment_card", "4111-1111-1111-1111")]),
        ("Amex 3782 822463 10005", [("payment_card", "3782 822463 10005")]),
        ("Org.nr. 974 760 673 MVA", [("organisasjonsnummer", "974 760 673")]),
        ("ring +47 22 33 44 55 nå", [("phone", "+47 22 33 44 55")]),
        ("ring 0047 412 34 567", [("phone", "0047 412 34 567")]),
        ("mobil 41234567, fast 22 33 44 55", [("phone", "41234567"), ("phone", "22 33 44 55")]),
        ("fra +46 70 123 45 67", [("phone", "+46 70 123 45 67")]),
        ("post: bjørn.sæther@nav.no.", [("email", "bjørn.sæther@nav.no")]),
        ("mailto:ola@example.com?subject=x", [("email", "ola@example.com")]),
        (
            "ip 10.0.0.1, [2001:db8::1] og fe80::1.",
            [("ip_address", "10.0.0.1"), ("ip_address", "2001:db8::1"), ("ip_address", "fe80::1")],
        ),
        ("bil EL 12345 og SV12345", [("vehicle_plate", "EL 12345"), ("vehicle_plate", "SV12345")]),
    ],
)
def test_every_type_in_its_usual_forms(text: str, expected: list[tuple[str, str]]) -> None:
    assert _spans(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Møtet 15.03.2024 kl. 14:30:00 i rom 4.2.1",
        "dato 20240115, beløp 1 234 567,50 kr",
        "std::vector<int> og a::b::c",
        "ISO 27001, NS 8407, GO 12345 (G brukes ikke på skilt)",
        "ordre 1234567890 og 12345678901234567890",
        "9 digits of the wrong series: 123456785",
        "IP 999.1.2.3 og 1.2.3",
        "@channel @here hei@ ikke@e-post",
    ],
)
def test_things_that_only_look_like_identifiers_are_not_reported(text: str) -> None:
    assert _spans(text) == []


def test_a_local_part_holding_a_number_is_one_email_finding() -> None:
    text = f"skriv til kunde{FNR}@firma.no"
    assert _spans(text) == [("email", f"kunde{FNR}@firma.no")]


def test_detector_limited_to_some_types() -> None:
    text = f"fnr {FNR}, e-post ola@nav.no"
    assert _spans(text, Detector(types=["email"])) == [("email", "ola@nav.no")]
    with pytest.raises(ValueError, match="unknown PII type"):
        Detector(types=["personnummer"])


def test_json_string_values_are_scanned_at_any_depth_with_dotted_paths() -> None:
    doc = {
        "kunde": {"navn": "Åse", "kontakt": ["tlf 41234567", {"epost": "åse@nav.no"}]},
        "notat": f"fnr {FNR}",
        "antall": 15108695088,  # a number, not a string: schema, not free text
        FNR: "nøkler skannes ikke",
    }
    found = [(path, f.type) for path, f in Detector().scan_json(doc)]
    assert found == [
        ("kunde.kontakt.0", "phone"),
        ("kunde.kontakt.1.epost", "email"),
        ("notat", "fodselsnummer"),
    ]


# -- bad input at the API --------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1" * 1_000_000,
        "a@" * 500_000,
        "AB1" * 330_000,
        "1:" * 500_000,
        "\x00" * 1_000_000,
        "x@" + "a." * 400_000 + "no",
    ],
    ids=["digits", "at-signs", "plate-like", "colons", "nul", "long-domain"],
)
def test_megabyte_adversarial_texts_are_scanned_without_findings(text: str) -> None:
    """Every branch is bounded and starts only at the beginning of a run: linear scans."""
    assert Detector().scan(text) == []


def test_identifiers_in_a_megabyte_text_are_all_found() -> None:
    text = f"fnr {FNR}, " * 60_000
    findings = Detector().scan(text)
    assert len(findings) == 60_000
    assert all(f.type == "fodselsnummer" for f in findings)


def test_json_deeper_than_the_limit_is_a_clear_error_not_a_crash() -> None:
    from gateway.pii import ScanLimitError

    doc: object = FNR
    for _ in range(10_000):
        doc = {"a": doc}
    with pytest.raises(ScanLimitError, match=r"deeper than 512 levels at a\.a\.a"):
        Detector().scan_json(doc)
    assert len(Detector(max_json_depth=20_000).scan_json(doc)) == 1


def test_types_by_field_gives_the_policy_engine_its_detected_mapping() -> None:
    event = {"note": f"fnr {FNR}, ring 41234567 eller 41234568", "meta": {"ip": "10.1.2.3"}}
    assert Detector().types_by_field(event) == {
        "note": ("fodselsnummer", "phone"),
        "meta.ip": ("ip_address",),
    }


def test_strings_walks_a_document_in_order_with_paths() -> None:
    doc = {"a": ["x", {"b": "y"}], "c": 3, "d": "z"}
    assert list(Detector().strings(doc)) == [("a.0", "x"), ("a.1.b", "y"), ("d", "z")]


# -- chance hits on random numbers -------------------------------------------------------------


def test_chance_hits_on_random_numbers_are_reported_and_bounded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Random digit strings in a neutral sentence: what share is reported, and as what.

    A check digit lets through one random number in ten or eleven; the words
    around (none here) and the written grouping keep most of those out.
    """
    import random

    rng = random.Random(7)
    detector = Detector()
    rows = []
    for length in (8, 9, 11, 16):
        hits: Counter[str] = Counter()
        trials = 3000
        for _ in range(trials):
            number = "".join(rng.choice("0123456789") for _ in range(length))
            for finding in detector.scan(f"Referanse {number} i saken."):
                hits[finding.type] += 1
        rows.append((length, trials, hits))
    with capsys.disabled():
        print("\n\nChance hits on random digit strings ('Referanse <n> i saken.'):\n")
        print("| digits | trials | reported as |")
        print("| ---: | ---: | --- |")
        for length, trials, hits in rows:
            shares = ", ".join(f"{t} {n / trials:.2%}" for t, n in hits.most_common()) or "none"
            print(f"| {length} | {trials} | {shares} |")
        print()
    by_length = {length: hits for length, _, hits in rows}
    # 8 digits: contiguous mobile numbers (first digit 4 or 9) are phones: ~20 %.
    assert 0.15 < by_length[8]["phone"] / 3000 < 0.25
    # 9 digits: bare, without an organisation word, never reported.
    assert by_length[9] == Counter()
    # 11 digits: only the valid personal numbers (both check digits and a real date).
    assert set(by_length[11]) <= {"fodselsnummer", "d_nummer", "h_nummer"}
    assert sum(by_length[11].values()) / 3000 < 0.01
    # 16 digits: Luhn (1 in 10) times the share of card-scheme prefixes.
    assert sum(by_length[16].values()) / 3000 < 0.05


def test_a_field_name_is_context_for_bare_numbers_in_json() -> None:
    account, org = CorpusBuilder(seed=8).kontonr(), CorpusBuilder(seed=8).orgnr()
    doc = {"kontonummer": account, "orgnr": org, "ordre": account, "ref": org}
    assert [(p, f.type) for p, f in Detector().scan_json(doc)] == [
        ("kontonummer", "kontonummer"),
        ("orgnr", "organisasjonsnummer"),
    ]
    assert Detector().scan(account, context="bankkonto") == [Finding(0, 11, "kontonummer", False)]
