"""`fjordgate doctor`: its configuration file, and running every placement check under a policy.

The configuration names the policy, the geo databases and what to check:

```yaml
policy: policies/packs/norway-strict.yaml   # relative to this file
geo: {dir: ~/.cache/fjordgate/geo}           # or country_db / asn_db / owners
placement:
  kafka_bootstrap: 10.20.0.11:9092
  sinks: ["postgresql://db.example.no:5432/traffic"]
  state_dir: /var/lib/fjordgate/state
  min_free_space: 20gb
  processor_config: processor.yaml            # the processor's Flink-style config
  processor: {taskmanager.memory.managed.size: 2gb, state.instances: 12}
  site_networks: {10.20.0.0/16: "NO"}         # private ranges no GeoIP database knows
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies import Policy, load_policy
from policies.location.errors import LocationError, PlacementConfigError
from policies.location.geodata import ASN_DB, COUNTRY_DB, default_geo_dir
from policies.location.locator import Locator
from policies.location.placement import CheckResult, PlacementConfig, run_placement_checks


def default_policy_path() -> Path:
    """$FJORDGATE_POLICY, else the shipped norway-strict pack."""
    configured = os.environ.get("FJORDGATE_POLICY")
    if configured:
        return Path(configured)
    return Path(str(resources.files("policies").joinpath("packs/norway-strict.yaml")))


class GeoConfig(BaseModel):
    """Where the geo databases and the owner data are (default: the geo cache directory)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dir: Path | None = None
    country_db: Path | None = None
    asn_db: Path | None = None
    owners: Path | None = None

    def paths(self) -> tuple[Path, Path]:
        """The country and ASN database files."""
        base = (self.dir or default_geo_dir()).expanduser()
        return (
            (self.country_db or base / COUNTRY_DB).expanduser(),
            (self.asn_db or base / ASN_DB).expanduser(),
        )

    def open(self) -> Locator:
        """Open the databases (raises GeoDatabaseError / JurisdictionDataError)."""
        country, asn = self.paths()
        return Locator.open(country, asn, self.owners)


class DoctorConfig(BaseModel):
    """The whole `fjordgate doctor --config FILE` document."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    policy: Path | None = None
    geo: GeoConfig = Field(default_factory=GeoConfig)
    placement: PlacementConfig = Field(default_factory=PlacementConfig)


def _relative_to(base: Path, value: Any) -> Any:
    if isinstance(value, str) and value and not value.startswith(("/", "~")):
        return str(base / value)
    return value


def load_doctor_config(path: Path) -> DoctorConfig:
    """Read a doctor configuration; relative paths are taken from the file's folder."""
    source = str(path)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise PlacementConfigError(source, "file not found") from None
    except (OSError, yaml.YAMLError) as error:
        raise PlacementConfigError(source, f"cannot be read: {error}") from None
    if not isinstance(document, dict):
        raise PlacementConfigError(source, "expected a mapping with policy, geo, placement")
    base = path.resolve().parent
    document["policy"] = _relative_to(base, document.get("policy"))
    geo = document.get("geo")
    if isinstance(geo, dict):
        for key in ("dir", "country_db", "asn_db", "owners"):
            geo[key] = _relative_to(base, geo.get(key))
    placement = document.get("placement")
    if isinstance(placement, dict):
        for key in ("state_dir", "processor_config"):
            if key in placement:
                placement[key] = _relative_to(base, placement[key])
    try:
        return DoctorConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise PlacementConfigError(source, problems) from None


@dataclass(frozen=True)
class DoctorReport:
    """The checks' results, under which policy, and whether the geo databases opened."""

    policy: Policy
    results: list[CheckResult]


def run_doctor(config: DoctorConfig) -> DoctorReport:
    """Load the policy, open the geo databases, and run every placement check."""
    policy = load_policy(config.policy or default_policy_path())
    locator: Locator | None
    geo_problem: CheckResult | None = None
    try:
        locator = config.geo.open()
    except LocationError as error:
        locator = None
        geo_problem = CheckResult(
            "geo.databases",
            "fail" if policy.mode == "enforce" else "warn",
            str(error),
            "run `fjordgate geo update`, or point geo.dir at the databases",
        )
    try:
        results = run_placement_checks(config.placement, policy, locator)
    finally:
        if locator is not None:
            locator.close()
    if geo_problem is not None:
        results.insert(0, geo_problem)
    return DoctorReport(policy=policy, results=results)
