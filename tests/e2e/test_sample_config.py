"""The sample production configuration (deploy/config/, mounted as /etc/fjordgate) loads
with the real loaders, lists every option, and agrees with itself and with the compose
file and systemd units that name it; so it cannot silently rot as the code moves on.
"""

from __future__ import annotations

import configparser
import ipaddress
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

import processor.config
from gateway.config import GatewayConfig
from gateway.errors import ConfigError
from policies import load_policy
from policies.egress import evaluate_egress
from policies.location.doctor import load_doctor_config
from processor import KafkaSource, PostgresSink, ProcessorConfig, TumblingWindow, load_job

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "deploy" / "config"
ETC = Path("/etc/fjordgate")


def _option_names(model: type[BaseModel]) -> set[str]:
    """Every option of a configuration model, nested models included."""
    names = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for candidate in getattr(info.annotation, "__args__", (info.annotation,)):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                names |= _option_names(candidate)
            for inner in getattr(candidate, "__args__", ()):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    names |= _option_names(inner)
    return names


def _written_keys(path: Path) -> set[str]:
    """Keys in a YAML file, set or shown commented out (`# key:` / `#   key:`)."""
    pattern = re.compile(r"^\s*(?:#\s*)?(?:-\s+)?([A-Za-z_][\w.-]*):", re.MULTILINE)
    return set(pattern.findall(path.read_text(encoding="utf-8")))


def _local(path: Path) -> Path:
    """Where deploy/config holds a file the services read as /etc/fjordgate/..."""
    return CONFIG / path.relative_to(ETC)


def test_gateway_config_loads_and_lists_every_option() -> None:
    config = GatewayConfig.load(CONFIG / "gateway.yaml")
    missing = _option_names(GatewayConfig) - _written_keys(CONFIG / "gateway.yaml")
    assert missing == set(), f"options not described in gateway.yaml: {sorted(missing)}"
    assert config.policy == ETC / "policy.yaml" and _local(config.policy).is_file()
    assert config.keyring.parent == ETC / "secrets"
    assert config.audit.signing_key.parent == ETC / "secrets"
    assert config.audit.directory.is_relative_to("/var/lib/fjordgate/audit")
    assert config.api_keys == [], "no sample key may ever be accepted"


def test_an_http_server_the_gateway_does_not_run_is_refused_by_name(tmp_path: Path) -> None:
    # `server: granian` was accepted once, and `serve` ran uvicorn anyway.
    raw = yaml.safe_load((CONFIG / "gateway.yaml").read_text(encoding="utf-8"))
    raw["http"]["server"] = "granian"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"http\.server: Input should be 'uvicorn'"):
        GatewayConfig.load(path)


def test_processor_config_loads_and_sets_every_flink_key() -> None:
    config = ProcessorConfig.load(CONFIG / "processor.yaml")
    known = set(processor.config._KEYS)  # the loader's table of accepted keys
    assert known - _written_keys(CONFIG / "processor.yaml") == set()
    # Instances of one group share this file: a fixed instance id would make them
    # fence each other's Kafka transactions.
    assert config.instance_id is None
    assert config.localdir == Path("/var/lib/fjordgate/state")
    assert config.kafka, "kafka.* settings are shown too"


def test_job_file_reads_the_gateways_tagged_topic_and_writes_postgres() -> None:
    gateway = GatewayConfig.load(CONFIG / "gateway.yaml")
    job = load_job(CONFIG / "jobs" / "norway-traffic.yaml", env={})
    assert isinstance(job.source_, KafkaSource)
    assert job.source_.topic == gateway.kafka.tagged_topic.replace("{stream}", "norway-traffic")
    assert job.source_.bootstrap_servers == gateway.kafka.bootstrap
    assert job.consumer_group is not None, "production processors scale out in a group"
    assert isinstance(job.sink_, PostgresSink)
    assert job.window_ == TumblingWindow(60_000)
    assert (job.out_of_orderness_ms, job.key_field) == (5_000, "region")


def test_job_file_says_the_same_job_as_the_shipped_seed_job() -> None:
    seed = load_job(
        ROOT / "processor" / "jobs" / "norway-traffic.yaml", env={"FJORDGATE_PG_DSN": "x"}
    )
    production = load_job(CONFIG / "jobs" / "norway-traffic.yaml", env={})
    same = ("name", "out_of_orderness_ms", "idle_timeout_ms", "time_field", "key_field",
            "window_", "allowed_lateness_ms", "key_column", "value_column")  # fmt: skip
    assert {k: getattr(production, k) for k in same} == {k: getattr(seed, k) for k in same}
    assert type(production.aggregation) is type(seed.aggregation)


def test_policy_reference_is_the_norway_strict_pack_annotated() -> None:
    annotated = load_policy(CONFIG / "policy.yaml")
    pack = load_policy(ROOT / "policies" / "packs" / "norway-strict.yaml")
    assert annotated.content_hash == pack.content_hash
    assert annotated.mode == "enforce"


def test_doctor_config_checks_what_the_services_use() -> None:
    doctor = load_doctor_config(CONFIG / "doctor.yaml")
    gateway = GatewayConfig.load(CONFIG / "gateway.yaml")
    proc = ProcessorConfig.load(CONFIG / "processor.yaml")
    assert doctor.policy == gateway.policy
    assert doctor.placement.kafka_bootstrap == gateway.kafka.bootstrap
    assert doctor.placement.state_dir == proc.localdir
    assert doctor.placement.processor_config == ETC / "processor.yaml"
    assert doctor.geo.paths() == (gateway.placement.country_db, gateway.placement.asn_db)
    assert doctor.placement.site_networks == gateway.placement.site_networks


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    return data


def _etc_paths(words: list[str]) -> list[Path]:
    return [Path(w) for w in words if w.startswith(str(ETC) + "/") and "/secrets/" not in w]


def test_every_file_compose_and_systemd_name_under_etc_fjordgate_is_shipped() -> None:
    named: list[Path] = []
    compose = _compose()
    for service in compose["services"].values():
        command = service.get("command") or []
        named += _etc_paths(command if isinstance(command, list) else shlex.split(command))
    for unit in sorted((ROOT / "deploy" / "systemd").glob("*.service")):
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(unit, encoding="utf-8")
        for key in ("ExecStart", "ExecStartPre"):
            if key in parser["Service"]:
                named += _etc_paths(shlex.split(parser["Service"][key]))
    assert named, "the deployment names its configuration files"
    assert [p for p in named if not _local(p).is_file()] == []
    assert compose["services"]["gateway"]["volumes"][0] == "./config:/etc/fjordgate:ro"


def test_compose_mounts_the_secrets_the_gateway_config_names() -> None:
    gateway = GatewayConfig.load(CONFIG / "gateway.yaml")
    targets = {
        s["target"] for s in _compose()["services"]["gateway"]["secrets"] if isinstance(s, dict)
    }
    assert {str(gateway.keyring), str(gateway.audit.signing_key)} <= targets


def test_the_gateway_units_pre_start_doctor_reads_its_config() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(ROOT / "deploy" / "systemd" / "fjordgate-gateway.service", encoding="utf-8")
    words = shlex.split(parser["Service"]["ExecStartPre"])
    config = Path(words[words.index("--config") + 1])
    load_doctor_config(_local(config))


def test_the_deployed_processor_checks_and_audits_its_destinations() -> None:
    commands = [_compose()["services"]["processor"]["command"]]
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read(ROOT / "deploy" / "systemd" / "fjordgate-processor.service", encoding="utf-8")
    commands.append(shlex.split(parser["Service"]["ExecStart"]))
    for command in commands:
        assert {"--policy", "--geo-dir", "--audit-dir", "--audit-key"} <= set(command)


def test_the_compose_network_is_one_the_policy_lets_data_reach() -> None:
    policy = load_policy(CONFIG / "policy.yaml")
    gateway = GatewayConfig.load(CONFIG / "gateway.yaml")
    subnets = [
        ipaddress.ip_network(pool["subnet"])
        for network in (_compose().get("networks") or {}).values()
        for pool in ((network or {}).get("ipam") or {}).get("config", [])
    ]
    assert subnets, "compose.yaml names no subnet for its services"
    for subnet in subnets:
        broker = next(subnet.hosts())
        verdict = evaluate_egress(policy, f"kafka://{broker}:9092")
        assert verdict.outcome == "allow", verdict.reasons
        assert any(
            broker in ipaddress.ip_network(net) for net in gateway.placement.site_networks
        ), "the gateway's placement check must know the compose network's country"
