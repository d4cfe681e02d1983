"""The Locator: country, AS, owner and jurisdiction of addresses and host names, and its errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.location import (
    GeoDatabaseError,
    Locator,
    MalformedAddress,
    MmdbWriter,
    NetworkOwner,
    StaleGeoDatabase,
    UnresolvableHost,
)

TELENOR = (2119, "Telenor Norge AS")
AMAZON = (16509, "Amazon.com, Inc.")


def test_an_address_gets_country_asn_owner_and_jurisdiction(geo_writer: Any) -> None:
    geo = geo_writer({"203.0.113.0/24": "SE"}, {"203.0.113.0/24": AMAZON})
    with geo.open() as locator:
        location = locator.locate("203.0.113.9")
    # A US-owned cloud's Stockholm region: in Sweden, under US jurisdiction.
    assert location.country == "SE"
    assert location.asn == 16509
    assert location.owner == "Amazon"
    assert location.jurisdiction == "US"
    assert location.to_json() == {
        "address": "203.0.113.9",
        "country": "SE",
        "asn": 16509,
        "owner": "Amazon",
        "jurisdiction": "US",
    }


def test_maxmind_shaped_country_records_are_read_too(geo_writer: Any) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"}, {}, maxmind_shape=True)
    with geo.open() as locator:
        assert locator.locate("192.0.2.1").country == "NO"


def test_an_owner_the_data_does_not_know_keeps_its_organisation_and_no_jurisdiction(
    geo_writer: Any,
) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"}, {"192.0.2.0/24": (64512, "Fjordnett Lokal AS")})
    with geo.open() as locator:
        location = locator.locate("192.0.2.1")
    assert location.owner == "Fjordnett Lokal AS"
    assert location.jurisdiction is None


def test_an_address_in_no_network_has_no_facts(geo_writer: Any) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"}, {})
    with geo.open() as locator:
        location = locator.locate("198.51.100.1")
    assert (location.country, location.asn, location.owner, location.jurisdiction) == (
        None,
        None,
        None,
        None,
    )


def test_policy_overrides_win_over_the_shipped_owner_data(geo_writer: Any) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"}, {"192.0.2.0/24": TELENOR})
    override = NetworkOwner(
        name="Telenor (reviewed locally)", jurisdiction="SE", asns=frozenset({2119})
    )
    with geo.open(overrides=[override]) as locator:
        location = locator.locate("192.0.2.1")
    assert (location.owner, location.jurisdiction) == ("Telenor (reviewed locally)", "SE")


@pytest.mark.parametrize("text", ["300.1.2.3", "1.2.3", "2001:db8::g", "1.2.3.4.5", "::1::2"])
def test_a_malformed_address_is_a_clear_error(loopback_in_norway: Any, text: str) -> None:
    with loopback_in_norway.open() as locator:
        with pytest.raises(MalformedAddress, match="not an IP address"):
            locator.locate(text)
        with pytest.raises(MalformedAddress):
            locator.locate_host(text)


@pytest.mark.parametrize("text", ["bad host", "-leading.example", "a..b", "x" * 64 + ".no"])
def test_a_malformed_host_name_is_refused_before_any_lookup(
    loopback_in_norway: Any, text: str
) -> None:
    with loopback_in_norway.open() as locator, pytest.raises(MalformedAddress):
        locator.resolve(text)


def test_an_unresolvable_host_is_a_clear_error(loopback_in_norway: Any) -> None:
    # .invalid is reserved (RFC 6761) and never resolves.
    with (
        loopback_in_norway.open() as locator,
        pytest.raises(UnresolvableHost, match=r"cannot resolve host 'nowhere\.invalid'"),
    ):
        locator.locate_host("nowhere.invalid")


def test_localhost_resolves_through_the_system_resolver(loopback_in_norway: Any) -> None:
    with loopback_in_norway.open() as locator:
        locations = locator.locate_host("localhost")
    assert locations
    assert {loc.address for loc in locations} <= {"127.0.0.1", "::1"}
    assert all(loc.country == "NO" for loc in locations)


def test_every_address_a_host_resolves_to_is_located(geo_writer: Any) -> None:
    geo = geo_writer(
        {"192.0.2.0/24": "NO", "2001:db8::/32": "SE"},
        {"192.0.2.0/24": TELENOR, "2001:db8::/32": AMAZON},
    )
    answers = {"api.example.no": ["192.0.2.10", "2001:db8::10"]}
    with geo.open(resolver=lambda host: answers[host]) as locator:
        locations = locator.locate_host("api.example.no")
    assert [(loc.address, loc.country, loc.jurisdiction) for loc in locations] == [
        ("192.0.2.10", "NO", "NO"),
        ("2001:db8::10", "SE", "US"),
    ]


def test_resolutions_are_cached_for_their_ttl(geo_writer: Any) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"})
    calls: list[str] = []

    def resolver(host: str) -> list[str]:
        calls.append(host)
        return ["192.0.2.1"]

    with geo.open(resolver=resolver, resolve_ttl=60.0) as cached:
        cached.resolve("a.example.no")
        cached.resolve("a.example.no")
    assert calls == ["a.example.no"]
    with geo.open(resolver=resolver, resolve_ttl=0.0) as uncached:
        uncached.resolve("a.example.no")
        uncached.resolve("a.example.no")
    assert calls == ["a.example.no"] * 3


def test_the_lookup_cache_is_bounded(geo_writer: Any) -> None:
    geo = geo_writer({"10.0.0.0/8": "NO"})
    with geo.open(cache_size=8) as locator:
        for i in range(50):
            assert locator.locate(f"10.0.0.{i}").country == "NO"
        assert len(locator._cache) + len(locator._old_cache) <= 8
        # A repeated address is answered from the cache: the same object.
        assert locator.locate("10.0.0.49") is locator.locate("10.0.0.49")


def test_a_missing_database_is_a_clear_error(tmp_path: Path, loopback_in_norway: Any) -> None:
    with pytest.raises(GeoDatabaseError, match=r"does not exist.*fjordgate geo update"):
        Locator.open(tmp_path / "nope.mmdb", loopback_in_norway.asn)


def test_a_corrupt_database_is_a_clear_error(tmp_path: Path, loopback_in_norway: Any) -> None:
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"this is not a MaxMind database" * 100)
    with pytest.raises(GeoDatabaseError, match="not a valid MaxMind DB"):
        Locator.open(garbage, loopback_in_norway.asn)


def test_a_truncated_database_is_a_clear_error(tmp_path: Path, loopback_in_norway: Any) -> None:
    whole = loopback_in_norway.country.read_bytes()
    cut = tmp_path / "cut.mmdb"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(GeoDatabaseError):
        Locator.open(cut, loopback_in_norway.asn)


def test_databases_swapped_are_recognised(loopback_in_norway: Any) -> None:
    with pytest.raises(GeoDatabaseError, match="not an ASN database"):
        Locator.open(loopback_in_norway.country, loopback_in_norway.country)
    with pytest.raises(GeoDatabaseError, match="not a country database"):
        Locator.open(loopback_in_norway.asn, loopback_in_norway.asn)


def test_a_database_older_than_the_limit_is_stale(geo_writer: Any) -> None:
    forty_days_ago = int(time.time()) - 40 * 86400
    geo = geo_writer({"192.0.2.0/24": "NO"}, build_epoch=forty_days_ago)
    with geo.open() as locator:
        locator.check_freshness(45)  # within the limit: no error
        with pytest.raises(StaleGeoDatabase, match=r"built 40\.\d days ago.*limit of 35 days"):
            locator.check_freshness(35)


def test_ipv6_and_ipv4_mapped_addresses_are_located(geo_writer: Any) -> None:
    writer_geo = geo_writer({"192.0.2.0/24": "NO", "2001:db8::/32": "DK"})
    with writer_geo.open() as locator:
        assert locator.locate("2001:db8::1").country == "DK"
        assert locator.locate("::ffff:192.0.2.1").country == "NO"


def test_a_hand_built_database_without_asn_in_its_type_is_not_taken_as_asn(
    tmp_path: Path, loopback_in_norway: Any
) -> None:
    other = MmdbWriter(database_type="City")
    other.insert_network("192.0.2.0/24", {"city": "Bergen"})
    path = other.write(tmp_path / "city.mmdb")
    with pytest.raises(GeoDatabaseError, match="'City' database, not an ASN database"):
        Locator.open(loopback_in_norway.country, path)


def test_a_policy_with_its_own_owner_entries_gets_them_first(geo_writer: Any) -> None:
    from types import SimpleNamespace

    geo = geo_writer({"192.0.2.0/24": "NO"}, {"192.0.2.0/24": (64512, "Fjordnett Lokal AS")})
    entries = [{"name": "Fjordnett", "jurisdiction": "NO", "asns": [64512]}]
    policy = SimpleNamespace(
        content_hash="sha256:test", jurisdiction=SimpleNamespace(network_owners=entries)
    )
    with geo.open() as locator:
        derived = locator.for_policy(policy)
        assert derived.locate("192.0.2.1").owner == "Fjordnett"
        assert locator.locate("192.0.2.1").jurisdiction is None  # the base table is unchanged
        assert locator.for_policy(policy) is derived  # kept per policy hash
        plain = SimpleNamespace(content_hash="sha256:x", jurisdiction=SimpleNamespace())
        assert locator.for_policy(plain) is locator


def test_a_database_corrupt_inside_is_a_clear_error_at_lookup(
    tmp_path: Path, loopback_in_norway: Any
) -> None:
    # Valid metadata (so it opens), garbage search tree (so a lookup fails).
    raw = bytearray(loopback_in_norway.country.read_bytes())
    raw[:300] = b"\xee" * 300
    damaged = tmp_path / "damaged.mmdb"
    damaged.write_bytes(bytes(raw))
    with (
        Locator.open(damaged, loopback_in_norway.asn) as locator,
        pytest.raises(GeoDatabaseError, match=r"lookup failed.*is corrupt"),
    ):
        locator.locate("127.0.0.1")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=45) | st.ip_addresses().map(str))
def test_any_text_is_either_located_as_an_address_or_refused_as_malformed(
    geo_writer_module: Any, text: str
) -> None:
    import ipaddress

    try:
        canonical = ipaddress.ip_address(text)
    except ValueError:
        canonical = None
    if canonical is not None and "%" not in text:
        assert geo_writer_module.locate(text).address == text
    else:
        with pytest.raises(MalformedAddress):
            geo_writer_module.locate(text)


@pytest.fixture(scope="module")
def geo_writer_module(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from policies.location import UInt32

    folder = tmp_path_factory.mktemp("geo-module")
    country = MmdbWriter(database_type="test-country")
    country.insert_network("0.0.0.0/1", {"country_code": "NO"})
    asn = MmdbWriter(database_type="test-ASN")
    asn.insert_network("0.0.0.0/1", {"autonomous_system_number": UInt32(2119)})
    with Locator.open(country.write(folder / "c.mmdb"), asn.write(folder / "a.mmdb")) as locator:
        yield locator


def test_an_ipv6_address_asked_of_an_ipv4_only_database_is_unknown_not_malformed(
    tmp_path: Path,
) -> None:
    from policies.location import UInt32

    country = MmdbWriter(database_type="test-country", ip_version=4)
    country.insert_network("192.0.2.0/24", {"country_code": "NO"})
    asn = MmdbWriter(database_type="test-ASN", ip_version=4)
    asn.insert_network("192.0.2.0/24", {"autonomous_system_number": UInt32(2119)})
    paths = country.write(tmp_path / "c.mmdb"), asn.write(tmp_path / "a.mmdb")
    with Locator.open(*paths) as locator:
        assert locator.locate("192.0.2.1").country == "NO"
        assert locator.locate("2001:db8::1").country is None
