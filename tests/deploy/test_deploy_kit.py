"""The deployment kit is valid: compose file (Compose Specification), sysctl, systemd units."""

from __future__ import annotations

import configparser
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _compose_schema() -> dict[str, Any]:
    # The Compose Specification's own JSON Schema, as vendored by check-jsonschema.
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema


def test_compose_file_follows_the_compose_specification() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(compose, _compose_schema())


def test_compose_schema_check_rejects_a_broken_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    compose["services"]["gateway"]["ports"] = {"not": "a list"}
    errors = list(jsonschema.Draft7Validator(_compose_schema()).iter_errors(compose))
    assert errors, "the schema check must be able to fail"


def test_compose_runs_the_whole_path_with_state_on_a_host_mount() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]
    assert {"kafka", "postgres", "gateway", "processor"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    binds = [v for v in services["processor"]["volumes"] if isinstance(v, dict)]
    assert any(v["type"] == "bind" and v["target"] == "/var/lib/fjordgate/state" for v in binds)
    # Every published port binds to loopback only: exposure is a deliberate choice.
    for service in services.values():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:")


def test_sysctl_sets_swappiness_to_one() -> None:
    settings = {}
    for line in (DEPLOY / "sysctl" / "90-fjordgate.conf").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    assert settings["vm.swappiness"] == "1"


def test_systemd_units_parse_and_run_fjordgate() -> None:
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) >= 2
    for unit in units:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read(unit, encoding="utf-8")
        assert {"Unit", "Service", "Install"} <= set(parser.sections()), unit.name
        assert "fjordgate" in parser["Service"]["ExecStart"]
        assert parser["Service"]["User"] == "fjordgate"
