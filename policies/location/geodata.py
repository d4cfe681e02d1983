"""Fetching and converting the geo databases: the `@ip-location-db` packages from the npm registry.

Country: `@ip-location-db/geo-whois-asn-country-mmdb` (CC0-1.0), already MaxMind
format. ASN: `@ip-location-db/asn` (CC BY 4.0: RouteViews, DB-IP, NRO; credited
in docs/NOTICE), shipped as CSV and converted here with our own mmdb writer.
Both land in a cache directory (default ~/.cache/fjordgate/geo) with a manifest.
"""

from __future__ import annotations

import calendar
import csv
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.location.errors import GeoDatabaseError, GeoUpdateError
from policies.location.locator import GeoDatabaseInfo, open_geo_database
from policies.location.mmdb import MmdbWriter, UInt32

COUNTRY_PACKAGE = "@ip-location-db/geo-whois-asn-country-mmdb"
COUNTRY_FILE_IN_PACKAGE = "geo-whois-asn-country.mmdb"
ASN_PACKAGE = "@ip-location-db/asn"
ASN_CSV_FILES = ("asn-ipv4-num.csv", "asn-ipv6-num.csv")
COUNTRY_DB = "country.mmdb"
ASN_DB = "asn.mmdb"
MANIFEST = "geo.json"
LICENCE_FILES = ("DBIP-LICENSE", "ROUTEVIEWS-LICENSE", "NRO_LICENSE", "MODIFICATIONS")
# The packages' versions end in the data's build time: 2.3.2026061719 is 2026-06-17 19:00 UTC.
_VERSION_STAMP = re.compile(r"\.(\d{4})(\d{2})(\d{2})(\d{2})$")


def default_geo_dir() -> Path:
    """$FJORDGATE_GEO_DIR, else $XDG_CACHE_HOME/fjordgate/geo, else ~/.cache/fjordgate/geo."""
    configured = os.environ.get("FJORDGATE_GEO_DIR")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "fjordgate" / "geo"


def version_epoch(version: str) -> int | None:
    """The data build time a package version encodes, as a Unix time (None if it has none)."""
    match = _VERSION_STAMP.search(version)
    if not match:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    return calendar.timegm((year, month, day, hour, 0, 0))


def _npm(args: list[str], step: str, cwd: Path | None = None, timeout: float = 600) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise GeoUpdateError(step, "npm is not installed (apt-get install npm)")
    try:
        completed = subprocess.run(
            [npm, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise GeoUpdateError(step, f"npm {' '.join(args)} timed out after {timeout:g} s") from None
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout).strip().splitlines()[-3:]
        raise GeoUpdateError(
            step, f"npm {args[0]} exited {completed.returncode}: {' | '.join(tail)}"
        )
    return completed.stdout


def latest_version(package: str) -> str:
    """The version the npm registry serves as `latest` for `package`."""
    out = _npm(["view", package, "version", "--json"], f"looking up {package}")
    try:
        value = json.loads(out)
    except json.JSONDecodeError:
        raise GeoUpdateError(f"looking up {package}", f"unexpected answer {out[:80]!r}") from None
    if isinstance(value, list):
        value = value[-1]
    return str(value)


def fetch_package(package: str, version: str, into: Path) -> Path:
    """`npm pack` the package into a temporary folder and unpack it under `into`; the folder."""
    step = f"fetching {package}@{version}"
    out = _npm(
        ["pack", f"{package}@{version}", "--json", "--pack-destination", str(into)], step, cwd=into
    )
    try:
        filename = json.loads(out)[0]["filename"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError):
        raise GeoUpdateError(step, f"unexpected npm pack answer {out[:120]!r}") from None
    tarball = into / filename
    target = into / f"unpacked-{filename}"
    try:
        with tarfile.open(tarball) as archive:
            archive.extractall(target, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise GeoUpdateError(step, f"cannot unpack {tarball.name}: {error}") from None
    tarball.unlink(missing_ok=True)
    return target / "package"


def _asn_rows(paths: list[Path]) -> Iterator[tuple[int, int, int, int, str]]:
    for path in paths:
        version = 6 if "ipv6" in path.name else 4
        with open(path, newline="", encoding="utf-8") as handle:
            for line_number, row in enumerate(csv.reader(handle), start=1):
                if len(row) < 4:
                    continue
                try:
                    yield version, int(row[0]), int(row[1]), int(row[2]), row[3]
                except ValueError:
                    raise GeoUpdateError(
                        f"converting {path.name}",
                        f"line {line_number} is not start,end,asn,organisation",
                    ) from None


def convert_asn_csv(csv_files: list[Path], target: Path, build_epoch: int | None) -> Path:
    """Write the ASN CSV ranges as a GeoLite2-ASN-shaped mmdb (number + organisation)."""
    writer = MmdbWriter(
        database_type="ip-location-db-ASN",
        description={
            "en": "ASN data from @ip-location-db/asn (RouteViews, DB-IP, NRO; CC BY "
            "4.0), converted by fjordgate"
        },
        build_epoch=build_epoch,
    )
    records: dict[tuple[int, str], dict[str, Any]] = {}
    for version, first, last, asn, organisation in _asn_rows(csv_files):
        record = records.get((asn, organisation))
        if record is None:
            record = {
                "autonomous_system_number": UInt32(asn),
                "autonomous_system_organization": organisation,
            }
            records[(asn, organisation)] = record
        writer.insert_range(first, last, record, version=version)
    return writer.write(target)


@dataclass(frozen=True)
class GeoUpdateResult:
    """What `fjordgate geo update` did."""

    directory: Path
    country_version: str
    asn_version: str
    updated: bool


def _read_manifest(directory: Path) -> dict[str, Any]:
    try:
        value = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def update_geo(directory: Path | None = None, *, force: bool = False) -> GeoUpdateResult:
    """Fetch the latest country and ASN packages into `directory` unless already there."""
    target = directory or default_geo_dir()
    target.mkdir(parents=True, exist_ok=True)
    country_version = latest_version(COUNTRY_PACKAGE)
    asn_version = latest_version(ASN_PACKAGE)
    manifest = _read_manifest(target)
    have = manifest.get("packages", {})
    if (
        not force
        and have.get(COUNTRY_PACKAGE) == country_version
        and have.get(ASN_PACKAGE) == asn_version
        and (target / COUNTRY_DB).exists()
        and (target / ASN_DB).exists()
    ):
        return GeoUpdateResult(target, country_version, asn_version, updated=False)
    with tempfile.TemporaryDirectory(prefix="fjordgate-geo-", dir=target) as scratch:
        work = Path(scratch)
        country_dir = fetch_package(COUNTRY_PACKAGE, country_version, work)
        country_source = country_dir / COUNTRY_FILE_IN_PACKAGE
        staged_country = work / COUNTRY_DB
        shutil.copyfile(country_source, staged_country)
        try:
            open_geo_database(staged_country, "country")[0].close()
        except GeoDatabaseError as error:
            raise GeoUpdateError(f"checking {COUNTRY_PACKAGE}", str(error)) from None
        asn_dir = fetch_package(ASN_PACKAGE, asn_version, work)
        staged_asn = convert_asn_csv(
            [asn_dir / name for name in ASN_CSV_FILES], work / ASN_DB, version_epoch(asn_version)
        )
        for name in LICENCE_FILES:
            for source_dir in (asn_dir, country_dir):
                if (source_dir / name).exists():
                    shutil.copyfile(source_dir / name, target / name)
        os.replace(staged_country, target / COUNTRY_DB)
        os.replace(staged_asn, target / ASN_DB)
    manifest = {
        "packages": {COUNTRY_PACKAGE: country_version, ASN_PACKAGE: asn_version},
        "fetched_at": int(time.time()),
        "licences": {
            COUNTRY_PACKAGE: "CC0-1.0",
            ASN_PACKAGE: "CC-BY-4.0 (RouteViews, DB-IP, NRO): see docs/NOTICE",
        },
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return GeoUpdateResult(target, country_version, asn_version, updated=True)


@dataclass(frozen=True)
class GeoInfo:
    """What is in a geo directory: each database's metadata and the packages it came from."""

    directory: Path
    databases: tuple[GeoDatabaseInfo, ...]
    packages: dict[str, str]
    fetched_at: int | None


def geo_info(directory: Path | None = None) -> GeoInfo:
    """Read both databases' metadata (raises GeoDatabaseError when one is missing or corrupt)."""
    target = directory or default_geo_dir()
    infos = []
    for name, kind in ((COUNTRY_DB, "country"), (ASN_DB, "ASN")):
        reader, info = open_geo_database(target / name, kind)
        reader.close()
        infos.append(info)
    manifest = _read_manifest(target)
    fetched = manifest.get("fetched_at")
    return GeoInfo(
        directory=target,
        databases=tuple(infos),
        packages=dict(manifest.get("packages", {})),
        fetched_at=int(fetched) if isinstance(fetched, int) else None,
    )
