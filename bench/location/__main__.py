"""Benchmark of policies.location: Locator lookups vs bare `maxminddb` reads of the same addresses.

Run: .venv/bin/python -m bench.location [--quick]

The floor is what a lookup cannot avoid: one read of the country database and
one of the ASN database per address, through the `maxminddb` C extension.
Cold: every address new to the Locator (no cache hit). Warm: a gateway's
workload, a few hundred destinations looked up over and over. Also measured:
host resolution with and without the TTL cache, and the mmdb writer converting
ranges against the `mmdb-writer` package when that is installed.
Writes bench/results/location.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import platform
import random
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import maxminddb

from policies.location import Locator, MmdbWriter, OwnerTable, UInt32, default_geo_dir
from policies.location.geodata import ASN_DB, COUNTRY_DB

RESULTS = Path(__file__).resolve().parent.parent / "results" / "location.md"


def _best(runs: int, body: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        body()
        best = min(best, time.perf_counter() - started)
    return best


def _synthetic_databases(folder: Path, networks: int, rng: random.Random) -> tuple[Path, Path]:
    countries = ["NO", "SE", "DK", "DE", "US", "NL", "FI", "GB", "FR", "IE"]
    owners = [
        (2119, "Telenor Norge AS"),
        (16509, "Amazon.com, Inc."),
        (224, "SIKT"),
        (24940, "Hetzner Online GmbH"),
        (64512, "Fjordnett Lokal AS"),
    ]
    country = MmdbWriter(database_type="bench-country")
    asn = MmdbWriter(database_type="bench-ASN")
    for _ in range(networks):
        prefix = rng.randint(12, 24)
        base = rng.getrandbits(32) >> (32 - prefix) << (32 - prefix)
        net = ipaddress.IPv4Network((base, prefix))
        country.insert_network(net, {"country_code": rng.choice(countries)})
        number, name = rng.choice(owners)
        asn.insert_network(
            net,
            {"autonomous_system_number": UInt32(number), "autonomous_system_organization": name},
        )
    return country.write(folder / COUNTRY_DB), asn.write(folder / ASN_DB)


def _addresses(count: int, rng: random.Random) -> list[str]:
    return [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(count)]


def _writer_comparison(rows: int, rng: random.Random, folder: Path) -> list[str]:
    ranges = []
    start = 16777216
    for _ in range(rows):
        start += rng.randint(1, 5000)
        end = start + rng.randint(0, 60000)
        ranges.append((start, end, rng.randint(1, 400000)))
        start = end + 1

    def ours() -> None:
        writer = MmdbWriter(database_type="bench-ASN")
        for first, last, number in ranges:
            writer.insert_range(
                first,
                last,
                {
                    "autonomous_system_number": UInt32(number),
                    "autonomous_system_organization": f"AS {number}",
                },
                version=4,
            )
        writer.write(folder / "ours.mmdb")

    ours_s = _best(1, ours)
    lines = [f"| fjordgate MmdbWriter | {rows} | {ours_s:.2f} | 1.00× |"]
    try:
        from mmdb_writer import MmdbU32, MMDBWriter  # type: ignore[import-not-found, unused-ignore]
        from netaddr import IPRange, IPSet  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        lines.append(f"| mmdb-writer (PyPI) | {rows} | not installed | – |")
        return lines

    def theirs() -> None:
        writer = MMDBWriter(ip_version=6, database_type="bench-ASN", ipv4_compatible=True)
        for first, last, number in ranges:
            writer.insert_network(
                IPSet(IPRange(first, last)),
                {
                    "autonomous_system_number": MmdbU32(number),
                    "autonomous_system_organization": f"AS {number}",
                },
            )
        writer.to_db_file(str(folder / "theirs.mmdb"))

    theirs_s = _best(1, theirs)
    lines.append(f"| mmdb-writer (PyPI) | {rows} | {theirs_s:.2f} | {theirs_s / ours_s:.2f}× |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a few seconds)")
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="use generated databases even when the real ones are cached",
    )
    args = parser.parse_args()
    rng = random.Random(20260617)
    count = 20_000 if args.quick else 100_000
    runs = 3 if args.quick else 5
    lines: list[str] = []

    with tempfile.TemporaryDirectory(prefix="fjordgate-bench-") as scratch:
        folder = Path(scratch)
        geo = default_geo_dir()
        if not args.synthetic and (geo / COUNTRY_DB).exists() and (geo / ASN_DB).exists():
            country_db, asn_db = geo / COUNTRY_DB, geo / ASN_DB
            source = f"the real databases in {geo}"
        else:
            country_db, asn_db = _synthetic_databases(folder, 20_000, rng)
            source = (
                "generated databases (20,000 random networks; run `fjordgate geo update` "
                "for the real ones)"
            )
        addresses = _addresses(count, rng)
        hot = addresses[:500]
        warm_workload = [rng.choice(hot) for _ in range(count)]

        country_reader = maxminddb.open_database(str(country_db))
        asn_reader = maxminddb.open_database(str(asn_db))

        def bare(workload: list[str]) -> Callable[[], None]:
            def body() -> None:
                cget, aget = country_reader.get, asn_reader.get
                for address in workload:
                    cget(address)
                    aget(address)

            return body

        def timed(body: Callable[[], object]) -> float:
            started = time.perf_counter()
            body()
            return time.perf_counter() - started

        opened = Locator.open(country_db, asn_db)

        def cold_once() -> float:
            # A fresh Locator, so every address and AS is new to it, with the default
            # cache (65,536 entries: the full run also pays for evictions), over the
            # floor's own readers: a newly opened reader's first touches of its memory
            # map are page faults the long-open floor readers no longer pay, and that
            # is the operating system's cost, not the Locator's.
            locator = Locator(
                country_reader,
                asn_reader,
                OwnerTable.load(),
                country_info=opened.country_info,
                asn_info=opened.asn_info,
            )
            locate = locator.locate
            return timed(lambda: [locate(a) for a in addresses])

        warm_locator = Locator.open(country_db, asn_db)
        warm_locate = warm_locator.locate

        # Floor and Locator runs alternate, so that load from other processes on
        # the machine hits both alike; the best run of each is kept.
        floor_cold = cold = floor_warm = warm = float("inf")
        for _ in range(runs):
            floor_cold = min(floor_cold, timed(bare(addresses)))
            cold = min(cold, cold_once())
            floor_warm = min(floor_warm, timed(bare(warm_workload)))
            warm = min(warm, timed(lambda: [warm_locate(a) for a in warm_workload]))

        lines += [
            "# policies.location benchmark",
            "",
            f"Machine: {platform.machine()}, {platform.python_implementation()} "
            f"{platform.python_version()}; data: {source}; {count:,} lookups per run, best of "
            f"{runs}.",
            "",
            "## Lookups (country + ASN + owner + jurisdiction) vs bare maxminddb reads",
            "",
            "Floor: `country.get(a)` and `asn.get(a)` with the maxminddb C extension, the two "
            "reads every lookup needs. Goal: the Locator within 1.5× of the floor.",
            "",
            "| workload | bare maxminddb (lookups/s) | Locator (lookups/s) "
            "| Locator time / floor |",
            "| --- | ---: | ---: | ---: |",
            f"| cold: {count:,} distinct addresses | {count / floor_cold:,.0f} | "
            f"{count / cold:,.0f} | {cold / floor_cold:.2f}× |",
            f"| warm: 500 destinations repeated | {count / floor_warm:,.0f} | "
            f"{count / warm:,.0f} | {warm / floor_warm:.2f}× |",
            "",
        ]
        warm_locator.close()
        opened.close()

        # Host resolution: the system resolver against the Locator's TTL cache.
        resolves = 2_000 if args.quick else 10_000
        system_s = _best(
            runs,
            lambda: (
                [
                    socket.getaddrinfo("localhost", None, proto=socket.IPPROTO_TCP)
                    for _ in range(resolves)
                ]
            ),
        )
        with Locator.open(country_db, asn_db) as locator:
            cached_s = _best(runs, lambda: [locator.resolve("localhost") for _ in range(resolves)])
        lines += [
            "## Host resolution (`localhost`, every A/AAAA)",
            "",
            "| path | resolutions/s | time / system resolver |",
            "| --- | ---: | ---: |",
            f"| getaddrinfo (system resolver, floor) | {resolves / system_s:,.0f} | 1.00× |",
            f"| Locator.resolve, 30 s TTL cache | {resolves / cached_s:,.0f} | "
            f"{cached_s / system_s:.3f}× |",
            "",
        ]

        writer_rows = 5_000 if args.quick else 20_000
        lines += [
            "## mmdb writer: converting ASN ranges (start, end, ASN, organisation)",
            "",
            "| writer | ranges | seconds | time / ours |",
            "| --- | ---: | ---: | ---: |",
            *_writer_comparison(writer_rows, rng, folder),
            "",
        ]
        country_reader.close()
        asn_reader.close()

    report = "\n".join(lines)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
