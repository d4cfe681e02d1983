"""The reviewed network-owner data file, and how owners are matched to autonomous systems."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.location import JurisdictionDataError, NetworkOwner, OwnerTable, default_owners_path


def test_the_shipped_data_loads_and_covers_the_owners_the_issue_names() -> None:
    table = OwnerTable.load()
    names = {owner.name for owner in table.owners}
    for expected in [
        "Amazon",
        "Microsoft",
        "Google",
        "Oracle",
        "Cloudflare",
        "Akamai",
        "Meta",
        "Fastly",
        "DigitalOcean",
        "IBM",
        "Alibaba",
        "Tencent",
        "Huawei",
        "Telenor",
        "Telia Norge",
        "Altibox / Lyse",
        "GlobalConnect",
        "Sikt (Uninett)",
        "Basefarm (Orange Business Digital Norway)",
        "Green Mountain",
    ]:
        assert expected in names, expected


def test_every_owner_in_the_shipped_data_cites_a_source() -> None:
    # Each entry's comment block names where the facts come from.
    text = default_owners_path().read_text(encoding="utf-8")
    entries = re.split(r"\n  - name: ", text)[1:]
    assert len(entries) == len(OwnerTable.load().owners)
    for entry in entries:
        comment = "\n".join(line for line in entry.splitlines() if line.strip().startswith("#"))
        assert re.search(r"annual report|10-K|register|statutes|statements|record", comment), (
            entry.splitlines()[0]
        )


def test_no_asn_is_claimed_by_two_owners() -> None:
    seen: dict[int, str] = {}
    for owner in OwnerTable.load().owners:
        for asn in owner.asns:
            assert asn not in seen, f"AS{asn} is under {seen.get(asn)} and {owner.name}"
            seen[asn] = owner.name


@pytest.mark.parametrize(
    ("asn", "organisation", "owner", "jurisdiction"),
    [
        (16509, "Amazon.com, Inc.", "Amazon", "US"),
        (8075, "Microsoft Corporation", "Microsoft", "US"),
        (45102, "Alibaba (US) Technology Co., Ltd.", "Alibaba", "CN"),
        (2119, "Telenor Norge AS", "Telenor", "NO"),
        (224, "SIKT - KUNNSKAPSSEKTORENS TJENESTELEVERANDOR", "Sikt (Uninett)", "NO"),
        (25400, "Telia Norge AS", "Telia Norge", "SE"),
        # Not listed by number: found by the organisation name.
        (4200000001, "Amazon Data Services Norway AS", "Amazon", "US"),
        (4200000002, "Green Mountain AS", "Green Mountain", "IL"),
    ],
)
def test_owners_are_found_by_number_then_by_name(
    asn: int, organisation: str, owner: str, jurisdiction: str
) -> None:
    found = OwnerTable.load().owner_of(asn, organisation)
    assert found is not None
    assert (found.name, found.jurisdiction) == (owner, jurisdiction)


@pytest.mark.parametrize(
    "organisation",
    ["GREEN MOUNTAIN COFFEE ROASTERS, INC.", "AMAZONET TELECOM LTDA", "Banco da Amazonia S/A"],
)
def test_name_patterns_do_not_catch_look_alikes(organisation: str) -> None:
    assert OwnerTable.load().owner_of(4200000009, organisation) is None


def test_overrides_come_first() -> None:
    table = OwnerTable.load().with_overrides(
        [NetworkOwner(name="Local review", jurisdiction="NO", asns=frozenset({16509}))]
    )
    found = table.owner_of(16509, "Amazon.com, Inc.")
    assert found is not None and found.name == "Local review"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"jurisdiction": "US", "asns": [1]}, "has no `name`"),
        ({"name": "X", "jurisdiction": "USA", "asns": [1]}, "not a two-letter country code"),
        ({"name": "X", "jurisdiction": "US"}, "neither `asns` nor `org_patterns`"),
        ({"name": "X", "jurisdiction": "US", "asns": ["one"]}, "list of AS numbers"),
        ({"name": "X", "jurisdiction": "US", "org_patterns": ["(unclosed"]}, "not a regular"),
    ],
)
def test_invalid_owner_entries_are_clear_errors(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    path = tmp_path / "owners.yaml"
    path.write_text(yaml.safe_dump({"owners": [entry]}))
    with pytest.raises(JurisdictionDataError, match=re.escape(message)):
        OwnerTable.load(path)


def test_a_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(JurisdictionDataError, match="file not found"):
        OwnerTable.load(tmp_path / "missing.yaml")


@pytest.mark.parametrize(
    ("pattern", "organisation"),
    [
        ("^a|fjord", "Vest fjord nett"),  # top-level alternation: the second part floats
        ("^x?fjord", "fjordnett"),  # an optional first letter
        ("^(fjord|vik)nett", "viknett AS"),
        ("\\bfjord\\b", "Nett i fjord AS"),
    ],
)
def test_owner_patterns_of_any_shape_match_as_written(pattern: str, organisation: str) -> None:
    table = OwnerTable.from_entries(
        [{"name": "Fjord", "jurisdiction": "NO", "org_patterns": [pattern]}], "test"
    )
    found = table.owner_of(4200000010, organisation)
    assert found is not None and found.name == "Fjord"


words = st.text(alphabet="abfjo", min_size=1, max_size=3)
# Patterns of the shapes the data uses and users may write: anchored or not, with
# top-level alternation, an optional first letter, a group.
patterns = st.one_of(
    st.builds(lambda w: "^" + w, words),
    st.builds(lambda w: w, words),
    st.builds(lambda a, b: f"^{a}|{b}", words, words),
    st.builds(lambda a, b: f"^{a}?{b}", words, words),
    st.builds(lambda a, b: f"^({a}|{b})", words, words),
)


@settings(max_examples=150, deadline=None)
@given(
    owner_patterns=st.lists(st.lists(patterns, min_size=1, max_size=2), min_size=1, max_size=4),
    organisation=st.text(alphabet="abfjoAB ", max_size=8),
)
def test_owner_lookup_by_name_agrees_with_trying_every_owner_in_order(
    owner_patterns: list[list[str]], organisation: str
) -> None:
    entries = [
        {"name": f"owner{i}", "jurisdiction": "NO", "org_patterns": pats}
        for i, pats in enumerate(owner_patterns)
    ]
    table = OwnerTable.from_entries(entries, "generated")
    expected = next(
        (
            f"owner{i}"
            for i, pats in enumerate(owner_patterns)
            if any(re.search(p, organisation, re.IGNORECASE) for p in pats)
        ),
        None,
    )
    found = table.owner_of(None, organisation)
    assert (found.name if found else None) == expected
