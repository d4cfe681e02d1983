"""Fixtures for the location tests: small geo databases the tests write, and small policies."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from policies import Policy, load_policy_text
from policies.location import Locator, MmdbWriter, UInt32


@dataclass(frozen=True)
class GeoFiles:
    """A country and an ASN database written for one test."""

    country: Path
    asn: Path

    def open(self, **kwargs: object) -> Locator:
        return Locator.open(self.country, self.asn, **kwargs)  # type: ignore[arg-type]


GeoWriter = Callable[..., GeoFiles]

# AS numbers that the shipped owner data knows: Telenor (NO), Amazon (US), Sikt (NO).
TELENOR = (2119, "Telenor Norge AS")
AMAZON = (16509, "Amazon.com, Inc.")
HETZNER = (24940, "Hetzner Online GmbH")


def write_geo(
    directory: Path,
    countries: Mapping[str, str],
    asns: Mapping[str, tuple[int, str]] | None = None,
    *,
    build_epoch: int | None = None,
    maxmind_shape: bool = False,
) -> GeoFiles:
    """Write country.mmdb and asn.mmdb mapping networks to countries and (ASN, organisation)."""
    directory.mkdir(parents=True, exist_ok=True)
    epoch = int(time.time()) if build_epoch is None else build_epoch
    country = MmdbWriter(database_type="test-country", build_epoch=epoch)
    for network, code in countries.items():
        record = {"country": {"iso_code": code}} if maxmind_shape else {"country_code": code}
        country.insert_network(network, record)
    asn = MmdbWriter(database_type="test-ASN", build_epoch=epoch)
    for network, (number, organisation) in (asns or {}).items():
        asn.insert_network(
            network,
            {
                "autonomous_system_number": UInt32(number),
                "autonomous_system_organization": organisation,
            },
        )
    return GeoFiles(country.write(directory / "country.mmdb"), asn.write(directory / "asn.mmdb"))


@pytest.fixture
def geo_writer(tmp_path: Path) -> GeoWriter:
    """Call with countries / asns mappings; each call writes into a fresh folder."""
    counter = iter(range(1000))

    def make(
        countries: Mapping[str, str],
        asns: Mapping[str, tuple[int, str]] | None = None,
        **kwargs: object,
    ) -> GeoFiles:
        return write_geo(tmp_path / f"geo{next(counter)}", countries, asns, **kwargs)  # type: ignore[arg-type]

    return make


@pytest.fixture
def loopback_in_norway(geo_writer: GeoWriter) -> GeoFiles:
    """127.0.0.0/8 and ::1 in Norway on Telenor's network."""
    return geo_writer(
        {"127.0.0.0/8": "NO", "::1/128": "NO"},
        {"127.0.0.0/8": TELENOR, "::1/128": TELENOR},
    )


@pytest.fixture
def loopback_in_sweden(geo_writer: GeoWriter) -> GeoFiles:
    """127.0.0.0/8 and ::1 in Sweden, run by Amazon (a US provider's Stockholm region)."""
    return geo_writer(
        {"127.0.0.0/8": "SE", "::1/128": "SE"},
        {"127.0.0.0/8": AMAZON, "::1/128": AMAZON},
    )


POLICY_TEMPLATE = """\
metadata: {{name: test, version: "1", owner: dpo@example.no}}
mode: {mode}
jurisdiction:
  home: "NO"
  placement_countries: ["NO"]
  adequate_destinations: {adequate}
  forbidden_provider_jurisdictions: {forbidden}
geoip: {{max_age_days: {max_age_days}}}
streams:
  s:
    fields:
      a: {{pii: none, action: allow}}
egress:
  default: {default}
  rules:
{rules}
placement:
  max_swappiness: {max_swappiness}
  max_broker_rtt_ms: {max_rtt}
  state: {{nvme: {nvme}}}
"""


def make_policy(
    *,
    mode: str = "enforce",
    adequate: str = "[SE, DK, DE]",
    forbidden: str = "[US, CN]",
    default: str = "deny",
    rules: str = "",
    max_age_days: int = 35,
    max_swappiness: int = 10,
    max_rtt: float = 50.0,
    nvme: str = "preferred",
) -> Policy:
    """A small valid policy; `rules` is YAML for egress.rules (a list), indented by the caller."""
    text = POLICY_TEMPLATE.format(
        mode=mode,
        adequate=adequate,
        forbidden=forbidden,
        default=default,
        rules=textwrap.indent(textwrap.dedent(rules), "    ") if rules.strip() else "    []",
        max_age_days=max_age_days,
        max_swappiness=max_swappiness,
        max_rtt=max_rtt,
        nvme=nvme,
    )
    text = text.replace("  rules:\n    []", "  rules: []")
    return load_policy_text(text, file="test-policy.yaml")


PolicyFactory = Callable[..., Policy]


@pytest.fixture
def policy_factory() -> PolicyFactory:
    """`policy_factory(mode=..., rules=..., ...)` builds a small valid policy."""
    return make_policy
