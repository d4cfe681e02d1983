"""Placement checks of this machine, over fake /proc and /sys roots: each passes and fails."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.location import CheckResult, PlacementConfig, run_placement_checks, worst_status
from policies.location.placement import (
    Endpoint,
    check_free_space,
    check_geo_freshness,
    check_processor_memory,
    check_state_filesystem,
    check_swappiness,
    check_transparent_hugepages,
    parse_memory_size,
)
from policies.location.system import mount_of, parse_mountinfo


class FakeMachine:
    """A /proc and /sys laid out in a folder, with a state directory mounted as the test says."""

    def __init__(self, root: Path) -> None:
        self.proc = root / "proc"
        self.sys = root / "sys"
        self.state = root / "state"
        self.state.mkdir(parents=True)
        (self.proc / "self").mkdir(parents=True)
        (self.proc / "sys" / "vm").mkdir(parents=True)
        self.swappiness(1)
        self.thp("always madvise [never]")
        (self.proc / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
        self._add_disk("259:0", "pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1", "nvme0n1p1", "0")
        self._add_disk(
            "8:0", "pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", "sda1", "1"
        )
        self.mount("ext4", "/dev/nvme0n1p1", "259:1")

    def _add_disk(self, disk_dev: str, path: str, partition: str, rotational: str) -> None:
        disk = self.sys / "devices" / path
        (disk / "queue").mkdir(parents=True)
        (disk / "queue" / "rotational").write_text(rotational + "\n")
        (disk / partition).mkdir()
        major, minor = disk_dev.split(":")
        links = self.sys / "dev" / "block"
        links.mkdir(parents=True, exist_ok=True)
        (links / disk_dev).symlink_to(disk)
        (links / f"{major}:{int(minor) + 1}").symlink_to(disk / partition)

    def mount(self, fstype: str, source: str, device: str) -> None:
        state = str(self.state).replace(" ", "\\040")
        (self.proc / "self" / "mountinfo").write_text(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
            "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
            f"90 27 {device} / {state} rw,noatime shared:1 - {fstype} {source} rw\n"
        )

    def swappiness(self, value: int) -> None:
        (self.proc / "sys" / "vm" / "swappiness").write_text(f"{value}\n")

    def thp(self, text: str | None) -> None:
        path = self.sys / "kernel" / "mm" / "transparent_hugepage" / "enabled"
        if text is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")

    def config(self, **kwargs: Any) -> PlacementConfig:
        return PlacementConfig(
            state_dir=self.state / "rocksdb", proc_root=self.proc, sys_root=self.sys, **kwargs
        )


@pytest.fixture
def machine(tmp_path: Path) -> FakeMachine:
    return FakeMachine(tmp_path / "machine")


def test_state_on_local_nvme_passes(machine: FakeMachine, policy_factory: Any) -> None:
    result = check_state_filesystem(policy_factory(), machine.config())
    assert result.status == "pass", result.detail
    assert result.facts["nvme"] is True
    assert result.facts["fstype"] == "ext4"


@pytest.mark.parametrize(
    ("fstype", "source"),
    [
        ("nfs4", "fileserver:/export/state"),
        ("cifs", "//fileserver/state"),
        ("fuse.sshfs", "user@host:/state"),
        ("overlay", "overlay"),
    ],
)
def test_state_on_a_network_fuse_or_overlay_file_system_fails(
    machine: FakeMachine, policy_factory: Any, fstype: str, source: str
) -> None:
    machine.mount(fstype, source, "0:77")
    result = check_state_filesystem(policy_factory(), machine.config())
    assert result.status == "fail"
    assert fstype in result.detail
    assert "local disk" in result.hint


def test_state_on_tmpfs_warns_that_it_is_lost_on_reboot(
    machine: FakeMachine, policy_factory: Any
) -> None:
    machine.mount("tmpfs", "tmpfs", "0:50")
    result = check_state_filesystem(policy_factory(), machine.config())
    assert result.status == "warn"
    assert "lost on reboot" in result.detail


def test_state_on_a_rotational_disk_warns_when_nvme_is_preferred_and_fails_when_required(
    machine: FakeMachine, policy_factory: Any
) -> None:
    machine.mount("xfs", "/dev/sda1", "8:1")
    preferred = check_state_filesystem(policy_factory(nvme="preferred"), machine.config())
    required = check_state_filesystem(policy_factory(nvme="required"), machine.config())
    anything = check_state_filesystem(policy_factory(nvme="any"), machine.config())
    assert (preferred.status, required.status, anything.status) == ("warn", "fail", "pass")
    assert preferred.facts["rotational"] is True


def test_mount_points_with_spaces_are_unescaped(tmp_path: Path) -> None:
    mounts = parse_mountinfo("90 27 259:1 / /data/my\\040state rw - ext4 /dev/nvme0n1p1 rw\n")
    assert mounts[0].mount_point == "/data/my state"
    assert mounts[0].fstype == "ext4"


def test_free_space_passes_and_fails_against_the_minimum(machine: FakeMachine) -> None:
    free = os.statvfs(machine.state).f_bavail * os.statvfs(machine.state).f_frsize
    assert check_free_space(machine.config(min_free_space=1024)).status == "pass"
    assert check_free_space(machine.config(min_free_space=free * 4)).status == "fail"
    assert check_free_space(machine.config(min_free_space=free * 2 // 3)).status == "warn"


def test_swappiness_at_most_the_limit_passes_above_it_fails(
    machine: FakeMachine, policy_factory: Any
) -> None:
    machine.swappiness(1)
    assert check_swappiness(policy_factory(max_swappiness=10), machine.config()).status == "pass"
    machine.swappiness(60)
    failed = check_swappiness(policy_factory(max_swappiness=10), machine.config())
    assert failed.status == "fail"
    assert "vm.swappiness = 60" in failed.detail
    assert "sysctl -w vm.swappiness=1" in failed.hint


def test_transparent_hugepages_are_reported_and_always_warns(machine: FakeMachine) -> None:
    machine.thp("always madvise [never]")
    never = check_transparent_hugepages(machine.config())
    assert (never.status, never.facts["mode"]) == ("pass", "never")
    machine.thp("[always] madvise never")
    assert check_transparent_hugepages(machine.config()).status == "warn"
    machine.thp(None)
    assert "not available" in check_transparent_hugepages(machine.config()).detail


PROCESSOR = {
    "taskmanager.memory.managed.size": "1gb",
    "state.backend.rocksdb.writebuffer.size": "64mb",
    "state.backend.rocksdb.writebuffer.count": 2,
    "state.backend.rocksdb.block.cache-size": "128mb",
    "state.instances": 2,
    "state.backend.rocksdb.block.cache-shared": False,
}


def test_rocksdb_memory_that_fits_passes(machine: FakeMachine) -> None:
    result = check_processor_memory(machine.config(processor=PROCESSOR))
    assert result.status == "pass", result.detail
    # 2 instances × 2 × 64 MiB + 2 × 128 MiB = 512 MiB of 1024 MiB.
    assert result.facts["needed_bytes"] == 512 * 1024**2


def test_rocksdb_memory_that_does_not_fit_fails(machine: FakeMachine) -> None:
    settings = {**PROCESSOR, "state.instances": 8}
    result = check_processor_memory(machine.config(processor=settings))
    assert result.status == "fail"
    assert "does not fit" in result.detail
    assert "writebuffer" in result.hint


def test_managed_memory_beyond_the_machine_fails(machine: FakeMachine) -> None:
    settings = {**PROCESSOR, "taskmanager.memory.managed.size": "64gb"}
    result = check_processor_memory(machine.config(processor=settings))
    assert result.status == "fail"
    assert "exceeds this machine's" in result.detail


def test_write_buffers_beyond_their_ratio_warn(machine: FakeMachine) -> None:
    settings = {
        **PROCESSOR,
        "state.backend.rocksdb.block.cache-size": "8mb",
        "state.instances": 3,
    }  # 384 MiB of buffers + 24 MiB cache: fits, ratio 0.375
    settings["state.backend.rocksdb.memory.write-buffer-ratio"] = 0.25
    assert check_processor_memory(machine.config(processor=settings)).status == "warn"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64mb", 64 * 1024**2),
        ("1gb", 1024**3),
        ("256m", 256 * 1024**2),
        ("512 kb", 512 * 1024),
        (4096, 4096),
        ("1.5g", int(1.5 * 1024**3)),
    ],
)
def test_memory_sizes_are_read_as_flink_writes_them(text: object, expected: int) -> None:
    assert parse_memory_size(text) == expected


def test_a_nonsense_memory_size_is_refused() -> None:
    with pytest.raises(ValueError, match="not a memory size"):
        parse_memory_size("lots")


def test_geo_freshness_passes_when_young_and_fails_when_old(
    geo_writer: Any, policy_factory: Any
) -> None:
    geo = geo_writer({"127.0.0.0/8": "NO"})
    with geo.open() as locator:
        young = check_geo_freshness(policy_factory(max_age_days=35), locator)
        old = check_geo_freshness(
            policy_factory(max_age_days=35),
            locator,
            now=locator.country_info.build_epoch + 40 * 86400,
        )
        observed = check_geo_freshness(
            policy_factory(mode="observe"),
            locator,
            now=locator.country_info.build_epoch + 40 * 86400,
        )
    assert young.status == "pass"
    assert old.status == "fail"
    assert "fjordgate geo update" in old.hint
    assert observed.status == "warn"


@pytest.fixture
def listener() -> Iterator[tuple[str, int]]:
    """A TCP listener on 127.0.0.1 that accepts and closes connections."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[0], server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _brokers_at(host: str, port: int) -> Any:
    def lister(bootstrap: str, config: object, timeout: float) -> list[Endpoint]:
        return [Endpoint("broker 1", host, port), Endpoint("broker 2", host, port)]

    return lister


def test_all_checks_run_together_and_a_failure_makes_the_whole_fail(
    machine: FakeMachine,
    loopback_in_norway: Any,
    policy_factory: Any,
    listener: tuple[str, int],
) -> None:
    policy = policy_factory(max_rtt=1000.0, nvme="preferred")
    with loopback_in_norway.open() as locator:
        good = run_placement_checks(
            machine.config(
                kafka_bootstrap="127.0.0.1:1",
                processor=PROCESSOR,
                sinks=["postgresql://127.0.0.1:5432/traffic"],
                min_free_space=1024,
            ),
            policy,
            locator,
            list_brokers=_brokers_at(*listener),
        )
        machine.swappiness(60)
        bad = run_placement_checks(machine.config(), policy, locator)
    by_name: dict[str, CheckResult] = {r.name: r for r in good}
    assert worst_status(good) == "pass", [(r.name, r.status, r.detail) for r in good]
    assert by_name["kafka.brokers"].status == "pass"
    assert set(by_name["kafka.rtt"].facts["rtt_ms"]) == {"broker 1", "broker 2"}
    assert by_name["sinks"].status == "pass"
    assert worst_status(bad) == "fail"
    assert {r.name for r in bad if r.status == "fail"} == {"sysctl.swappiness"}


def test_site_networks_give_private_addresses_their_declared_country(
    machine: FakeMachine, geo_writer: Any, policy_factory: Any
) -> None:
    geo = geo_writer({"192.0.2.0/24": "NO"})  # knows nothing of 10.x, as real databases
    config = machine.config(sinks=["postgresql://10.20.0.5:5432/traffic"])
    declared = machine.config(
        sinks=["postgresql://10.20.0.5:5432/traffic"], site_networks={"10.20.0.0/16": "no"}
    )
    with geo.open() as locator:
        unknown = {r.name: r for r in run_placement_checks(config, policy_factory(), locator)}
        known = {r.name: r for r in run_placement_checks(declared, policy_factory(), locator)}
    assert unknown["sinks"].status == "fail"
    assert "site_networks" in unknown["sinks"].hint
    assert known["sinks"].status == "pass"


def test_a_site_network_that_is_not_a_network_is_refused(machine: FakeMachine) -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        machine.config(site_networks={"10.20.0.0/33": "NO"})


# Mount points as the kernel lists them: absolute and canonical (no "." or ".." parts).
mount_points = st.lists(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"])
        | st.sampled_from(" \t\\"),
        min_size=1,
        max_size=12,
    ).filter(lambda p: "/" not in p and p not in (".", "..")),
    min_size=1,
    max_size=4,
).map(lambda parts: "/" + "/".join(parts))


def _escape(path: str) -> str:
    # As the kernel writes mountinfo: space, tab, newline and backslash in octal.
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


@settings(max_examples=80, deadline=None)
@given(point=mount_points, fstype=st.sampled_from(["ext4", "xfs", "nfs4", "tmpfs", "fuse.sshfs"]))
def test_mountinfo_lines_parse_back_to_what_the_kernel_escaped(point: str, fstype: str) -> None:
    line = f"36 35 98:0 / {_escape(point)} rw,noatime master:1 - {fstype} /dev/x rw,errors=continue"
    (mount,) = parse_mountinfo(line)
    assert mount.mount_point == point
    assert mount.fstype == fstype
    assert mount_of(Path(point) / "state", [mount]) == mount


@given(
    number=st.integers(min_value=0, max_value=10**6),
    unit=st.sampled_from(["", "k", "m", "g", "kb", "mb", "gb", "KiB", "MiB", "GiB"]),
)
def test_memory_sizes_scale_by_their_unit(number: int, unit: str) -> None:
    factor = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit[:1].lower()]
    assert parse_memory_size(f"{number}{unit}") == number * factor


def test_rocksdb_sizes_are_read_from_the_processors_own_config_file(
    machine: FakeMachine, tmp_path: Path
) -> None:
    processor_file = tmp_path / "processor.yaml"
    processor_file.write_text(
        "state.backend.rocksdb.localdir: /var/lib/fjordgate/state\n"
        "state.backend.rocksdb.writebuffer.size: 256mb\n"
        "state.backend.rocksdb.block.cache-size: 128mb\n"
        "execution.checkpointing.interval: 10 s\n"
    )

    def check(budget: str) -> CheckResult:
        settings = {"taskmanager.memory.managed.size": budget, "state.instances": 6}
        config = machine.config(processor_config=processor_file, processor=settings)
        return check_processor_memory(config)

    # 6 instances × 2 × 256 MiB = 3 GiB of write buffers, plus one shared 128 MiB cache.
    roomy, tight = check("8gb"), check("2gb")
    assert roomy.status == "pass", roomy.detail
    assert roomy.facts["write_buffers_bytes"] == 6 * 2 * 256 * 1024**2
    assert roomy.facts["block_cache_bytes"] == 128 * 1024**2
    assert tight.status == "fail"


def test_processor_settings_without_a_budget_warn(machine: FakeMachine) -> None:
    result = check_processor_memory(machine.config(processor={"state.instances": 2}))
    assert result.status == "warn"
    assert "taskmanager.memory.managed.size" in result.hint


def test_round_trip_time_is_measured_to_an_address_that_answers(
    listener: tuple[str, int],
) -> None:
    from policies.location.placement import tcp_rtt_ms

    host, port = listener
    # "localhost" may also name ::1, where nothing listens: that address is skipped.
    assert tcp_rtt_ms("localhost", port, probes=3, timeout_s=5.0) > 0
    assert tcp_rtt_ms(host, port, probes=1, timeout_s=5.0) > 0


def test_round_trip_to_a_closed_port_fails_the_check(
    loopback_in_norway: Any, policy_factory: Any, machine: FakeMachine
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    with loopback_in_norway.open() as locator:
        results = run_placement_checks(
            machine.config(kafka_bootstrap="127.0.0.1:1"),
            policy_factory(),
            locator,
            list_brokers=_brokers_at("127.0.0.1", closed),
        )
    rtt = next(r for r in results if r.name == "kafka.rtt")
    assert rtt.status == "fail"
    assert "cannot connect" in rtt.detail
