"""What the end-to-end tests share: the policy they enforce, the GeoIP facts they plant,
the gateway and processor they start as real processes, and the CLI they check with.

The building blocks come from the areas' own tests (the location tests' mmdb writer,
the gateway tests' config writer, served-process wrapper and topic reader), so the
end-to-end test exercises the same helpers their owners keep working.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from audit import SigningKey
from tests.gateway.kafka_support import ServedGateway, write_config
from tests.location.conftest import AMAZON, TELENOR, write_geo

ROOT = Path(__file__).resolve().parents[2]
FJORDGATE = str(Path(sys.executable).parent / "fjordgate")
NORWAY_STRICT = ROOT / "policies" / "packs" / "norway-strict.yaml"
SEED_JOB = ROOT / "processor" / "jobs" / "norway-traffic.yaml"
STREAM = "norway-traffic"

# What the test GeoIP databases say about 127.0.0.0/8, where every test service listens.
IN_NORWAY = ({"127.0.0.0/8": "NO"}, {"127.0.0.0/8": TELENOR})
# A US cloud's Stockholm region: inside the EEA, still under US jurisdiction (Schrems II).
US_CLOUD_IN_SWEDEN = ({"127.0.0.0/8": "SE"}, {"127.0.0.0/8": AMAZON})


def machine_swappiness() -> int:
    return int(Path("/proc/sys/vm/swappiness").read_text().strip())


def norway_strict_copy(directory: Path, *, mode: str = "enforce") -> Path:
    """The shipped norway-strict pack, in `mode`, with one change for the test machine.

    The CI machine's vm.swappiness is not ours to set (a shared kernel), and the pack
    allows at most 10; the limit is raised to the machine's value so that the placement
    gate judges what this test is about (where the services are), not the host's sysctl.
    Everything else (streams, egress, jurisdictions, broker placement) is the pack's text.
    """
    text = NORWAY_STRICT.read_text(encoding="utf-8")
    assert "\nmode: enforce\n" in text and "  max_swappiness: 10\n" in text
    text = text.replace("\nmode: enforce\n", f"\nmode: {mode}\n")
    limit = max(10, machine_swappiness())
    text = text.replace("  max_swappiness: 10\n", f"  max_swappiness: {limit}\n")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def plant_geo(directory: Path, facts: tuple[dict[str, str], dict[str, tuple[int, str]]]) -> Path:
    """country.mmdb and asn.mmdb in `directory`, mapping loopback as `facts` say."""
    countries, asns = facts
    write_geo(directory, countries, asns)
    return directory


@dataclass
class GatewaySetup:
    config: Path
    api_key: str
    port: int
    audit_dir: Path
    signing_key: Path
    keyring: Path
    tagged_topic: str

    def served(self, log_path: Path) -> ServedGateway:
        return ServedGateway(self.config, self.port, log_path)


def gateway_setup(directory: Path, bootstrap: str, policy: Path, geo: Path) -> GatewaySetup:
    """A `fjordgate gateway serve` config: the gateway tests' writer, plus the geo databases."""
    path, key = write_config(directory, bootstrap, policy=policy)
    config: dict[str, Any] = yaml.safe_load(path.read_text())
    config["placement"] = {
        "country_db": str(geo / "country.mmdb"),
        "asn_db": str(geo / "asn.mmdb"),
    }
    path.write_text(yaml.safe_dump(config))
    return GatewaySetup(
        config=path,
        api_key=key,
        port=int(config["http"]["port"]),
        audit_dir=Path(config["audit"]["directory"]),
        signing_key=Path(config["audit"]["signing_key"]),
        keyring=Path(config["keyring"]),
        tagged_topic=config["kafka"]["tagged_topic"].replace("{stream}", STREAM),
    )


@dataclass
class ProcessorSetup:
    """The seed job adapted to a test topic and database, and how to run it."""

    job: Path
    config: Path
    audit_dir: Path
    signing_key: Path
    late_events: Path
    env: dict[str, str]
    args: list[str]


def processor_setup(
    directory: Path, bootstrap: str, topic: str, dsn: str, policy: Path, geo: Path
) -> ProcessorSetup:
    """`fjordgate processor run` of the shipped seed job, reading `topic`, writing to `dsn`."""
    directory.mkdir(parents=True, exist_ok=True)
    text = SEED_JOB.read_text(encoding="utf-8")
    assert "    topic: norway-traffic\n" in text
    job = directory / "norway-traffic.yaml"
    job.write_text(text.replace("    topic: norway-traffic\n", f"    topic: {topic}\n"))
    config = directory / "processor.yaml"
    config.write_text(
        f"state.backend.rocksdb.localdir: {directory / 'state'}\n"
        "execution.checkpointing.interval: 1 s\n"
        "state.checkpoints.num-retained: 2\n"
        "fjordgate.processor.poll-timeout: 100 ms\n"
    )
    signing_key = directory / "audit-key.pem"
    SigningKey.create(signing_key)
    late = directory / "late-events.jsonl"
    env = {
        **os.environ,
        "FJORDGATE_KAFKA": bootstrap,
        "FJORDGATE_PG_DSN": dsn,
        "FJORDGATE_LATE_EVENTS": str(late),
    }
    audit_dir = directory / "audit"
    args = [
        FJORDGATE, "--log-json", "processor", "run", str(job), "--config", str(config),
        "--policy", str(policy), "--geo-dir", str(geo),
        "--audit-dir", str(audit_dir), "--audit-key", str(signing_key),
    ]  # fmt: skip
    return ProcessorSetup(job, config, audit_dir, signing_key, late, env, args)


def fjordgate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `fjordgate` CLI to completion (the operator's view)."""
    return subprocess.run(
        [FJORDGATE, *args], capture_output=True, text=True, env=env, timeout=600, check=False
    )


def export_public_key(signing_key: Path, out: Path) -> Path:
    done = fjordgate("audit", "key", "export", str(signing_key), "--output", str(out))
    assert done.returncode == 0, done.stderr
    return out


def export_report(audit_dir: Path, public_key: Path, out: Path) -> dict[str, Any]:
    """`fjordgate audit export --format json`, pinned to the log's public key; the report."""
    done = fjordgate(
        "audit", "export", str(audit_dir), "--format", "json", "--output", str(out),
        "--public-key", str(public_key),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    return report
