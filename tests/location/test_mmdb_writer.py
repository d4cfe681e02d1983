"""The mmdb writer: what it writes, both MaxMind readers (C extension and pure Python) read back."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import maxminddb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.location import MmdbWriter, UInt32

READER_MODES = [maxminddb.MODE_MMAP_EXT, maxminddb.MODE_FILE]


@pytest.mark.parametrize("mode", READER_MODES)
def test_a_more_specific_network_wins_inside_and_the_rest_keeps_the_larger_one(
    tmp_path: Path, mode: int
) -> None:
    writer = MmdbWriter(database_type="test-country")
    writer.insert_network("127.0.0.0/8", {"country_code": "SE"})
    writer.insert_network("127.0.0.1/32", {"country_code": "NO"})
    path = writer.write(tmp_path / "c.mmdb")
    with maxminddb.open_database(str(path), mode) as reader:
        assert reader.get("127.0.0.1") == {"country_code": "NO"}
        assert reader.get("127.0.0.2") == {"country_code": "SE"}
        assert reader.get("127.255.255.255") == {"country_code": "SE"}
        assert reader.get("128.0.0.0") is None
        # IPv4-mapped IPv6 addresses reach the IPv4 data.
        assert reader.get("::ffff:127.0.0.1") == {"country_code": "NO"}


@pytest.mark.parametrize("mode", READER_MODES)
def test_ranges_are_split_into_networks_covering_exactly_the_range(
    tmp_path: Path, mode: int
) -> None:
    writer = MmdbWriter(database_type="test-ASN")
    writer.insert_range("10.0.0.5", "10.0.1.7", {"autonomous_system_number": UInt32(64500)})
    writer.insert_range(
        int(ipaddress.ip_address("2001:db8::")),
        int(ipaddress.ip_address("2001:db8::ff")),
        {"autonomous_system_number": UInt32(64501)},
        version=6,
    )
    path = writer.write(tmp_path / "a.mmdb")
    with maxminddb.open_database(str(path), mode) as reader:
        assert reader.get("10.0.0.4") is None
        assert reader.get("10.0.0.5") == {"autonomous_system_number": 64500}
        assert reader.get("10.0.1.7") == {"autonomous_system_number": 64500}
        assert reader.get("10.0.1.8") is None
        assert reader.get("2001:db8::ff") == {"autonomous_system_number": 64501}
        assert reader.get("2001:db8::100") is None


def test_metadata_has_the_types_libmaxminddb_requires(tmp_path: Path) -> None:
    writer = MmdbWriter(
        database_type="test-country", build_epoch=1_700_000_000, description={"en": "x"}
    )
    writer.insert_network("192.0.2.0/24", {"country_code": "NO"})
    path = writer.write(tmp_path / "c.mmdb")
    # The C extension refuses a file whose metadata types are wrong.
    with maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT) as reader:
        meta = reader.metadata()
        assert meta.build_epoch == 1_700_000_000
        assert meta.database_type == "test-country"
        assert meta.ip_version == 6
        assert meta.record_size in (24, 28, 32)


def test_a_range_that_ends_before_it_starts_is_refused() -> None:
    writer = MmdbWriter(database_type="t")
    with pytest.raises(ValueError, match="before its start"):
        writer.insert_range("10.0.0.9", "10.0.0.1", {"a": 1})


values = st.recursive(
    st.one_of(
        st.text(max_size=40),
        st.integers(min_value=-(2**31), max_value=2**128 - 1),
        st.booleans(),
        st.floats(allow_nan=False),
        st.binary(max_size=20),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10), inner, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(record=st.dictionaries(st.text(max_size=12), values, max_size=5))
def test_every_data_type_round_trips(
    tmp_path_factory: pytest.TempPathFactory, record: dict[str, object]
) -> None:
    writer = MmdbWriter(database_type="t")
    writer.insert_network("198.51.100.0/24", record)
    path = writer.write(tmp_path_factory.mktemp("rt") / "t.mmdb")
    with maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT) as reader:
        assert reader.get("198.51.100.7") == record


networks = st.tuples(
    st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=1, max_value=32)
).map(lambda t: ipaddress.ip_network((t[0] >> (32 - t[1]) << (32 - t[1]), t[1])))


@settings(max_examples=60, deadline=None)
@given(
    inserts=st.lists(networks, min_size=1, max_size=12),
    probes=st.lists(st.integers(min_value=0, max_value=2**32 - 1), min_size=1, max_size=20),
)
def test_lookups_agree_with_a_brute_force_last_insert_wins_reference(
    tmp_path_factory: pytest.TempPathFactory,
    inserts: list[ipaddress.IPv4Network],
    probes: list[int],
) -> None:
    writer = MmdbWriter(database_type="t")
    for index, network in enumerate(inserts):
        writer.insert_network(network, {"i": index})
    path = writer.write(tmp_path_factory.mktemp("bf") / "t.mmdb")
    # Probe the edges of every inserted network too: that is where splitting goes wrong.
    edges = [int(n.network_address) for n in inserts] + [int(n.broadcast_address) for n in inserts]
    with maxminddb.open_database(str(path), maxminddb.MODE_MMAP_EXT) as reader:
        for value in [*probes, *edges]:
            address = ipaddress.IPv4Address(value)
            expected = None
            for index, network in enumerate(inserts):
                if address in network:
                    expected = {"i": index}
            assert reader.get(str(address)) == expected, str(address)
