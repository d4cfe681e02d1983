"""Placement checks: is every part of this deployment where the policy says it must be?

Each check gives pass, warn or fail (or skip when not configured) with the facts
and a fix hint: geo database freshness, the location and jurisdiction of every
Kafka broker the cluster advertises and of every sink, the state directory's file
system and device, vm.swappiness, transparent huge pages, the TCP round-trip
time to each broker, and whether the processor's RocksDB memory fits its budget.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from policies.egress import Destination
from policies.errors import InvalidDestination
from policies.location.errors import LocationError, PlacementConfigError
from policies.location.locator import Location, Locator
from policies.location.system import (
    block_device_of,
    existing_ancestor,
    mount_of,
    parse_mountinfo,
    read_memtotal_bytes,
    read_swappiness,
    read_transparent_hugepages,
)
from policies.models import Policy

Status = Literal["pass", "warn", "fail", "skip"]
STATUS_ORDER: dict[str, int] = {"skip": 0, "pass": 1, "warn": 2, "fail": 3}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory_size(value: Any) -> int:
    """Bytes from an int or a Flink-style size: `64mb`, `1gb`, `256m`, `512 kb`."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a memory size: write e.g. 64mb, 1gb or a byte count")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])


MemorySize = Annotated[int, BeforeValidator(parse_memory_size), Field(ge=0)]


class ProcessorMemory(BaseModel):
    """The processor's RocksDB memory settings, under the names Flink uses for them.

    Defaults are those of fjordgate's processor (processor/config.py): 64 MiB
    write buffers, two per instance (RocksDB's max_write_buffer_number), and one
    64 MiB block cache shared by every partition of the process.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    managed_memory: MemorySize | None = Field(default=None, alias="taskmanager.memory.managed.size")
    writebuffer_size: MemorySize = Field(
        default=64 * 1024**2, alias="state.backend.rocksdb.writebuffer.size"
    )
    writebuffer_count: Annotated[int, Field(ge=1)] = Field(
        default=2, alias="state.backend.rocksdb.writebuffer.count"
    )
    block_cache_size: MemorySize = Field(
        default=64 * 1024**2, alias="state.backend.rocksdb.block.cache-size"
    )
    write_buffer_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        default=0.5, alias="state.backend.rocksdb.memory.write-buffer-ratio"
    )
    shared_block_cache: bool = Field(default=True, alias="state.backend.rocksdb.block.cache-shared")
    state_instances: Annotated[int, Field(ge=1)] = Field(
        default=1,
        alias="state.instances",
        description="RocksDB instances in one process (partitions × stores).",
    )


class PlacementConfig(BaseModel):
    """What `fjordgate doctor` checks: the deployment's endpoints, state and processor memory."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kafka_bootstrap: str | None = None
    kafka_config: dict[str, str] = Field(default_factory=dict)
    sinks: list[str] = Field(default_factory=list)
    state_dir: Path | None = None
    min_free_space: MemorySize = 1024**3
    processor: ProcessorMemory | None = None
    processor_config: Path | None = Field(
        default=None,
        description="The processor's own config file (Flink-style flat YAML); its RocksDB "
        "sizes are read from it, `processor` adds the memory budget and instance count.",
    )
    site_networks: dict[str, str] = Field(
        default_factory=dict,
        description="This site's own networks (no GeoIP database knows private ranges) and "
        "their country, e.g. {'10.20.0.0/16': 'NO'}.",
    )
    proc_root: Path = Path("/proc")
    sys_root: Path = Path("/sys")
    rtt_probes: Annotated[int, Field(ge=1, le=20)] = 3
    timeout_s: Annotated[float, Field(gt=0)] = 10.0

    @field_validator("site_networks")
    @classmethod
    def _networks_and_countries(cls, value: dict[str, str]) -> dict[str, str]:
        checked = {}
        for network, country in value.items():
            try:
                cidr = str(ipaddress.ip_network(network, strict=False))
            except ValueError:
                raise ValueError(
                    f"{network!r} is not an IP network: write e.g. 10.20.0.0/16"
                ) from None
            if not re.fullmatch(r"[A-Za-z]{2}", country):
                raise ValueError(f"{country!r} for {network} is not a two-letter country code")
            checked[cidr] = country.upper()
        return checked


@dataclass(frozen=True)
class CheckResult:
    """One placement check's outcome, its facts, and how to fix a failure."""

    name: str
    status: Status
    detail: str
    hint: str = ""
    facts: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """JSON shape of `fjordgate doctor --json` and of the placement attestation."""
        return {
            "name": self.name,
            "status": self.status,
            "detail": self.detail,
            "hint": self.hint,
            "facts": dict(self.facts),
        }


def worst_status(results: Iterable[CheckResult]) -> Status:
    """The most severe status among the results (`skip` when there are none)."""
    worst: Status = "skip"
    for result in results:
        if STATUS_ORDER[result.status] > STATUS_ORDER[worst]:
            worst = result.status
    return worst


def placement_record(results: list[CheckResult], policy: Policy) -> dict[str, Any]:
    """The audit record (type `placement`) that attests these results under this policy."""
    return {
        "type": "placement",
        "outcome": worst_status(results),
        "mode": policy.mode,
        "policy_hash": policy.content_hash,
        "checks": [result.to_json() for result in results],
    }


# -- endpoints (brokers and sinks) ---------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """A host (and port) to locate, with a label saying what it is (`broker 1`, `sink ...`)."""

    label: str
    host: str
    port: int | None


def _site_location(address: str, site_networks: Mapping[str, str]) -> Location | None:
    ip = ipaddress.ip_address(address)
    for network, country in site_networks.items():
        if ip in ipaddress.ip_network(network, strict=False):
            return Location(address, country.upper(), None, "site network", None)
    return None


def _locate_endpoint(
    endpoint: Endpoint, locator: Locator, site_networks: Mapping[str, str]
) -> list[Location]:
    locations = []
    for address in locator.resolve(endpoint.host):
        site = _site_location(address, site_networks)
        locations.append(site or locator.locate(address))
    return locations


def _endpoints_check(
    name: str,
    what: str,
    endpoints: list[Endpoint],
    allowed: frozenset[str],
    policy: Policy,
    locator: Locator | None,
    config: PlacementConfig,
) -> CheckResult:
    enforce = policy.mode == "enforce"
    if locator is None:
        return CheckResult(
            name,
            "fail" if enforce else "warn",
            f"cannot locate the {what}: no geo database",
            "run `fjordgate geo update`, or set geo.dir / geo.country_db / geo.asn_db",
        )
    forbidden = set(policy.jurisdiction.forbidden_provider_jurisdictions)
    problems: list[str] = []
    unknown: list[str] = []
    facts: dict[str, Any] = {}
    for endpoint in endpoints:
        try:
            located = _locate_endpoint(endpoint, locator, config.site_networks)
        except LocationError as error:
            problems.append(f"{endpoint.label} ({endpoint.host}): {error}")
            facts[endpoint.label] = {"host": endpoint.host, "error": str(error)}
            continue
        facts[endpoint.label] = {
            "host": endpoint.host,
            "port": endpoint.port,
            "addresses": [loc.to_json() for loc in located],
        }
        for loc in located:
            where = f"{endpoint.label} {endpoint.host} ({loc.address})"
            if loc.jurisdiction is not None and loc.jurisdiction in forbidden:
                problems.append(
                    f"{where} is run by {loc.owner} under {loc.jurisdiction} jurisdiction"
                )
            elif loc.country is None:
                unknown.append(f"{where} is in no known country")
            elif loc.country not in allowed:
                problems.append(f"{where} is in {loc.country}")
    allowed_text = ", ".join(sorted(allowed))
    if problems:
        return CheckResult(
            name,
            "fail",
            "; ".join(problems + unknown),
            f"run the {what} in {allowed_text} on a provider outside "
            f"{', '.join(sorted(forbidden)) or 'no forbidden jurisdiction'}, or change the "
            "policy's placement rules",
            facts,
        )
    if unknown:
        return CheckResult(
            name,
            "fail" if enforce else "warn",
            "; ".join(unknown),
            "declare this site's private networks and their country under "
            "placement.site_networks, or use a geo database that knows the addresses",
            facts,
        )
    count = sum(len(v.get("addresses", [])) for v in facts.values())
    return CheckResult(
        name,
        "pass",
        f"{len(endpoints)} {what} ({count} addresses) in {allowed_text}, none under a forbidden "
        "jurisdiction",
        facts=facts,
    )


BrokerLister = Callable[[str, Mapping[str, str], float], list[Endpoint]]


def kafka_brokers(
    bootstrap: str, client_config: Mapping[str, str], timeout_s: float
) -> list[Endpoint]:
    """Every broker the cluster's metadata advertises (not only the bootstrap servers)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    # librdkafka's own log lines would print over the doctor's table; its errors
    # reach us as the KafkaException below.
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 2, **client_config})
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as error:
        raise PlacementConfigError(
            f"kafka {bootstrap}", f"cannot read the cluster's metadata: {error}"
        ) from None
    return [
        Endpoint(f"broker {broker.id}", str(broker.host), int(broker.port))
        for broker in sorted(metadata.brokers.values(), key=lambda b: b.id)
    ]


def tcp_rtt_ms(host: str, port: int, probes: int, timeout_s: float) -> float:
    """The round-trip time to host:port in ms: the fastest of `probes` TCP handshakes.

    The name is resolved before the clock starts (a handshake is one round trip;
    a DNS lookup is not part of it). With several addresses, the slowest that
    answers counts, since a client may be sent to any of them; an address that
    refuses is skipped, as clients skip it, unless none answers.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OSError(f"cannot resolve {host}: {error.strerror or error}") from None
    worst: float | None = None
    last_error: OSError | None = None
    for family, kind, proto, _name, sockaddr in sorted(set(infos)):
        best = float("inf")
        try:
            for _ in range(probes):
                with socket.socket(family, kind, proto) as sock:
                    sock.settimeout(timeout_s)
                    started = time.perf_counter()
                    sock.connect(sockaddr)
                    best = min(best, (time.perf_counter() - started) * 1000.0)
        except OSError as error:
            last_error = error
            continue
        worst = best if worst is None else max(worst, best)
    if worst is None:
        raise last_error or OSError(f"{host} has no address")
    return worst


def _rtt_check(brokers: list[Endpoint], policy: Policy, config: PlacementConfig) -> CheckResult:
    name = "kafka.rtt"
    limit = policy.placement.max_broker_rtt_ms
    measured: dict[str, float] = {}
    failures: list[str] = []
    for broker in brokers:
        try:
            measured[broker.label] = tcp_rtt_ms(
                broker.host, broker.port or 9092, config.rtt_probes, config.timeout_s
            )
        except OSError as error:
            failures.append(f"{broker.label} {broker.host}:{broker.port}: {error}")
    shown = ", ".join(f"{label} {ms:.2f} ms" for label, ms in measured.items())
    facts = {"rtt_ms": measured, "limit_ms": limit}
    if failures:
        return CheckResult(
            name,
            "fail",
            "cannot connect: " + "; ".join(failures),
            "check that every advertised listener is reachable from this machine",
            facts,
        )
    if limit is None:
        return CheckResult(name, "pass", f"{shown} (the policy sets no limit)", facts=facts)
    slow = {label: ms for label, ms in measured.items() if ms > limit}
    if slow:
        return CheckResult(
            name,
            "fail",
            f"round trip above {limit:g} ms: "
            + ", ".join(f"{label} {ms:.2f} ms" for label, ms in slow.items())
            + "; too far for a broker in the declared country (Oslo to Frankfurt is 30-40 ms)",
            "check where the brokers really run (an in-country cluster answers in a few ms), "
            "or raise placement.max_broker_rtt_ms if the network path is known to be slow",
            facts,
        )
    return CheckResult(name, "pass", f"{shown}, all at most {limit:g} ms", facts=facts)


def _sink_endpoints(
    sinks: list[str], config: PlacementConfig, list_brokers: BrokerLister
) -> list[Endpoint]:
    endpoints: list[Endpoint] = []
    for sink in sinks:
        try:
            dest = Destination.parse(sink)
        except InvalidDestination as error:
            raise PlacementConfigError("sinks", str(error)) from None
        if dest.text.lower().startswith("kafka://"):
            # A Kafka sink is its whole cluster: every broker it advertises.
            bootstrap = f"{dest.host}:{dest.port or 9092}"
            for broker in list_brokers(bootstrap, config.kafka_config, config.timeout_s):
                endpoints.append(
                    Endpoint(f"sink {dest.text} {broker.label}", broker.host, broker.port)
                )
        else:
            endpoints.append(Endpoint(f"sink {dest.text}", dest.host, dest.port))
    return endpoints


# -- machine checks ---------------------------------------------------------------------------


def check_geo_freshness(
    policy: Policy, locator: Locator | None, now: float | None = None
) -> CheckResult:
    """Both geo databases younger than the policy's geoip.max_age_days."""
    name = "geo.freshness"
    limit = policy.geoip.max_age_days
    if locator is None:
        return CheckResult(
            name,
            "fail" if policy.mode == "enforce" else "warn",
            "no geo database is open",
            "run `fjordgate geo update`",
        )
    ages = {info.path.name: round(info.age_days(now), 1) for info in locator.databases()}
    shown = ", ".join(f"{path} {age:g} days" for path, age in ages.items())
    stale = {path: age for path, age in ages.items() if age > limit}
    if stale:
        return CheckResult(
            name,
            "fail" if policy.mode == "enforce" else "warn",
            f"older than the policy's {limit} days: {shown}",
            "run `fjordgate geo update` (and schedule it), or raise geoip.max_age_days",
            {"age_days": ages, "max_age_days": limit},
        )
    return CheckResult(
        name,
        "pass",
        f"{shown} (limit {limit} days)",
        facts={"age_days": ages, "max_age_days": limit},
    )


def check_state_filesystem(policy: Policy, config: PlacementConfig) -> CheckResult:
    """The state directory is on a local block device (NVMe preferred), not NFS, FUSE, overlay."""
    name = "state.filesystem"
    if config.state_dir is None:
        return CheckResult(name, "skip", "no state directory configured")
    rules = policy.placement.state
    directory = existing_ancestor(config.state_dir)
    mounts = parse_mountinfo((config.proc_root / "self" / "mountinfo").read_text())
    mount = mount_of(directory, mounts)
    if mount is None:
        return CheckResult(
            name,
            "fail",
            f"no mount found for {directory}",
            f"check {config.proc_root}/self/mountinfo",
        )
    facts: dict[str, Any] = {
        "path": str(config.state_dir),
        "mount_point": mount.mount_point,
        "fstype": mount.fstype,
        "source": mount.source,
    }
    forbidden = {fs.lower() for fs in rules.forbidden_filesystems}
    base = mount.fstype.split(".", 1)[0].lower()
    family = mount.family
    where = f"{config.state_dir} is on {mount.fstype} ({mount.source} at {mount.mount_point})"
    hint_local = (
        "put state.backend.rocksdb.localdir on a local disk (ext4 or xfs on NVMe), "
        "e.g. a dedicated partition mounted at /var/lib/fjordgate"
    )
    if (
        mount.fstype.lower() in forbidden
        or base in forbidden
        or (rules.local_block_device and family in ("network", "fuse", "overlay"))
    ):
        return CheckResult(name, "fail", f"{where}: a {family} file system", hint_local, facts)
    if family == "memory":
        return CheckResult(
            name,
            "warn",
            f"{where}: memory-backed, state is lost on reboot",
            hint_local + "; tmpfs only for throw-away test runs",
            facts,
        )
    device = block_device_of(mount, config.sys_root)
    if device is None:
        status: Status = "fail" if rules.local_block_device else "warn"
        return CheckResult(
            name, status, f"{where}: no block device found under it", hint_local, facts
        )
    facts.update({"device": device.name, "nvme": device.nvme, "rotational": device.rotational})
    kind = "NVMe" if device.nvme else ("rotational disk" if device.rotational else "non-NVMe")
    detail = f"{where}: local block device {device.name} ({kind})"
    if not device.nvme and rules.nvme == "required":
        return CheckResult(
            name,
            "fail",
            detail + "; the policy requires NVMe",
            "move the state directory to an NVMe device",
            facts,
        )
    if not device.nvme and rules.nvme == "preferred":
        return CheckResult(
            name,
            "warn",
            detail + "; NVMe is preferred",
            "RocksDB compaction is I/O bound: prefer an NVMe device",
            facts,
        )
    return CheckResult(name, "pass", detail, facts=facts)


def check_free_space(config: PlacementConfig) -> CheckResult:
    """The state directory's file system has at least `min_free_space` free (warn below twice)."""
    name = "state.free_space"
    if config.state_dir is None:
        return CheckResult(name, "skip", "no state directory configured")
    directory = existing_ancestor(config.state_dir)
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    need = config.min_free_space
    facts = {"free_bytes": free, "min_free_bytes": need}
    detail = f"{free / 1024**3:.1f} GiB free at {directory} (minimum {need / 1024**3:.1f} GiB)"
    hint = "free space, move the state directory, or lower min_free_space"
    if free < need:
        return CheckResult(name, "fail", detail, hint, facts)
    if free < 2 * need:
        return CheckResult(name, "warn", detail + "; less than twice the minimum", hint, facts)
    return CheckResult(name, "pass", detail, facts=facts)


def check_swappiness(policy: Policy, config: PlacementConfig) -> CheckResult:
    """vm.swappiness at most the policy's limit (swapped RocksDB pages stall the processor)."""
    name = "sysctl.swappiness"
    limit = policy.placement.max_swappiness
    try:
        value = read_swappiness(config.proc_root)
    except (OSError, ValueError) as error:
        return CheckResult(
            name,
            "warn",
            f"cannot read vm.swappiness: {error}",
            "check that /proc/sys/vm/swappiness is readable",
        )
    facts = {"swappiness": value, "limit": limit}
    if limit is None:
        return CheckResult(name, "pass", f"vm.swappiness = {value} (no limit)", facts=facts)
    if value > limit:
        return CheckResult(
            name,
            "fail",
            f"vm.swappiness = {value}, above the policy's limit of {limit}",
            "sysctl -w vm.swappiness=1 and persist it in /etc/sysctl.d/90-fjordgate.conf "
            "(see deploy/)",
            facts,
        )
    return CheckResult(name, "pass", f"vm.swappiness = {value} (limit {limit})", facts=facts)


def check_transparent_hugepages(config: PlacementConfig) -> CheckResult:
    """Reports the THP mode; `always` warns (RocksDB's guidance is madvise or never)."""
    name = "kernel.transparent_hugepages"
    mode = read_transparent_hugepages(config.sys_root)
    if mode is None:
        return CheckResult(name, "pass", "transparent huge pages not available in this kernel")
    facts = {"mode": mode}
    if mode == "always":
        return CheckResult(
            name,
            "warn",
            "transparent huge pages: always (latency spikes and memory bloat for RocksDB)",
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (or never), and "
            "persist it with transparent_hugepage=madvise on the kernel command line",
            facts,
        )
    return CheckResult(name, "pass", f"transparent huge pages: {mode}", facts=facts)


def _processor_memory(config: PlacementConfig) -> ProcessorMemory | None:
    if config.processor_config is None:
        return config.processor
    try:
        raw = yaml.safe_load(config.processor_config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise PlacementConfigError(
            str(config.processor_config), f"cannot read the processor config: {error}"
        ) from None
    if not isinstance(raw, dict):
        raise PlacementConfigError(str(config.processor_config), "expected a flat mapping")
    known = {f.alias for f in ProcessorMemory.model_fields.values() if f.alias}
    merged = {key: value for key, value in raw.items() if key in known}
    if config.processor is not None:
        merged.update(config.processor.model_dump(by_alias=True, exclude_unset=True))
    try:
        return ProcessorMemory.model_validate(merged)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise PlacementConfigError(str(config.processor_config), problems) from None


def check_processor_memory(config: PlacementConfig) -> CheckResult:
    """RocksDB write buffers and block cache fit the processor's managed memory."""
    name = "processor.memory"
    try:
        memory = _processor_memory(config)
    except PlacementConfigError as error:
        return CheckResult(
            name,
            "fail",
            str(error),
            "give taskmanager.memory.managed.size under placement.processor",
        )
    if memory is None:
        return CheckResult(name, "skip", "no processor memory settings configured")
    if memory.managed_memory is None:
        return CheckResult(
            name,
            "warn",
            "no memory budget configured, so RocksDB's use cannot be checked",
            "give taskmanager.memory.managed.size under placement.processor",
        )
    mib = 1024**2
    instances = memory.state_instances
    buffers = memory.writebuffer_size * memory.writebuffer_count * instances
    cache = memory.block_cache_size * (1 if memory.shared_block_cache else instances)
    need = buffers + cache
    budget = memory.managed_memory
    total = read_memtotal_bytes(config.proc_root)
    facts = {
        "write_buffers_bytes": buffers,
        "block_cache_bytes": cache,
        "needed_bytes": need,
        "managed_memory_bytes": budget,
        "machine_memory_bytes": total,
    }
    detail = (
        f"RocksDB needs {need / mib:.0f} MiB ({instances} instance(s): write buffers "
        f"{memory.writebuffer_count} × {memory.writebuffer_size / mib:.0f} MiB each = "
        f"{buffers / mib:.0f} MiB, block cache {cache / mib:.0f} MiB) of "
        f"{budget / mib:.0f} MiB managed memory"
    )
    if total is not None and budget > total:
        return CheckResult(
            name,
            "fail",
            f"managed memory {budget / mib:.0f} MiB exceeds this machine's {total / mib:.0f} MiB",
            "lower taskmanager.memory.managed.size below the machine's memory",
            facts,
        )
    if need > budget:
        return CheckResult(
            name,
            "fail",
            detail + ": does not fit",
            "lower state.backend.rocksdb.writebuffer.size / .count or block.cache-size, "
            "share the block cache, or raise taskmanager.memory.managed.size",
            facts,
        )
    if buffers > memory.write_buffer_ratio * budget:
        return CheckResult(
            name,
            "warn",
            detail + f"; write buffers exceed write-buffer-ratio {memory.write_buffer_ratio:g} "
            "of it, leaving little for the block cache",
            "lower the write buffers or raise the managed memory",
            facts,
        )
    return CheckResult(name, "pass", detail, facts=facts)


# -- all of them ----------------------------------------------------------------------------


def run_placement_checks(
    config: PlacementConfig,
    policy: Policy,
    locator: Locator | None,
    *,
    list_brokers: BrokerLister = kafka_brokers,
) -> list[CheckResult]:
    """Run every placement check; each reports, none raises for what it finds."""
    results = [check_geo_freshness(policy, locator)]
    if locator is not None:
        locator = locator.for_policy(policy)
    placement = policy.placement
    broker_countries = frozenset(placement.brokers.countries or policy.jurisdiction.placement)
    sink_countries = frozenset(placement.sinks.countries or policy.jurisdiction.placement)
    if config.kafka_bootstrap:
        try:
            brokers = list_brokers(config.kafka_bootstrap, config.kafka_config, config.timeout_s)
        except LocationError as error:
            results.append(
                CheckResult(
                    "kafka.brokers",
                    "fail",
                    str(error),
                    "check kafka_bootstrap and that the cluster is up and reachable",
                )
            )
        else:
            results.append(
                _endpoints_check(
                    "kafka.brokers",
                    "Kafka brokers",
                    brokers,
                    broker_countries,
                    policy,
                    locator,
                    config,
                )
            )
            results.append(_rtt_check(brokers, policy, config))
    else:
        results.append(CheckResult("kafka.brokers", "skip", "no kafka_bootstrap configured"))
    if config.sinks:
        try:
            sinks = _sink_endpoints(config.sinks, config, list_brokers)
        except LocationError as error:
            results.append(
                CheckResult(
                    "sinks", "fail", str(error), "check the sink addresses in the configuration"
                )
            )
        else:
            results.append(
                _endpoints_check("sinks", "sinks", sinks, sink_countries, policy, locator, config)
            )
    else:
        results.append(CheckResult("sinks", "skip", "no sinks configured"))
    results.append(check_state_filesystem(policy, config))
    results.append(check_free_space(config))
    results.append(check_swappiness(policy, config))
    results.append(check_transparent_hugepages(config))
    results.append(check_processor_memory(config))
    return results
