"""The shipped packs and the author's CLI: check, schema, test, explain, diff."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from policies import load_policy, policy_json_schema, read_policy_data
from policies.cli import policy_app
from tests.policies.conftest import CASES, PACK_FILES, PACKS, REPO

runner = CliRunner()


def test_the_two_packs_ship() -> None:
    assert {p.name for p in PACK_FILES} >= {"norway-strict.yaml", "norway-eea.yaml"}
    for pack in PACK_FILES:
        assert (CASES / pack.stem).is_dir(), f"{pack.name} has no test cases"


@pytest.mark.parametrize("pack", PACK_FILES, ids=lambda p: p.stem)
def test_every_pack_declares_the_norway_traffic_stream(pack: Path) -> None:
    stream = load_policy(pack).streams["norway-traffic"]
    assert stream.key == "region"
    assert stream.event_time is not None and stream.event_time.field == "event_time"
    assert set(stream.event_time.formats) == {"iso8601", "epoch_ms"}
    actions = {path: (rule.pii, rule.action) for path, rule in stream.fields.items()}
    assert actions["region"] == ("none", "allow")
    assert actions["speed"] == ("none", "allow")
    assert actions["plate"] == ("vehicle_plate", "pseudonymise")
    assert actions["driver_id"] == ("fodselsnummer", "pseudonymise")
    assert stream.fields["note"].scan is not None
    assert stream.fields["note"].scan.on_detected == "redact"


def test_strict_pack_forbids_us_providers_and_allows_only_norway() -> None:
    policy = load_policy(PACKS / "norway-strict.yaml")
    assert policy.jurisdiction.home == "NO"
    assert "US" in policy.jurisdiction.forbidden_provider_jurisdictions
    assert policy.jurisdiction.adequate_destinations == []
    assert policy.jurisdiction.placement == frozenset({"NO"})


def test_eea_pack_lists_the_eea_and_the_commission_adequacy_countries() -> None:
    from policies._countries import EEA, EU_ADEQUACY

    policy = load_policy(PACKS / "norway-eea.yaml")
    adequate = set(policy.jurisdiction.adequate_destinations)
    assert adequate >= EEA - {"NO"}
    # Canada and the US are adequate only for some recipients: not by country code.
    assert adequate & EU_ADEQUACY == EU_ADEQUACY - {"US", "CA"}


def test_json_schema_validates_every_shipped_pack() -> None:
    schema = policy_json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for pack in PACK_FILES:
        errors = list(validator.iter_errors(read_policy_data(pack)))
        assert errors == [], (pack, [e.message for e in errors])


def test_json_schema_rejects_what_the_loader_rejects() -> None:
    validator = jsonschema.Draft202012Validator(policy_json_schema())
    data = read_policy_data(PACKS / "norway-strict.yaml")
    data["streams"]["norway-traffic"]["fields"]["plate"]["action"] = "pseudonymize"
    data["jurisdiction"]["home"] = "XZ"
    data["mistake"] = 1
    assert len(list(validator.iter_errors(data))) == 3


def test_schema_command_prints_the_schema() -> None:
    result = runner.invoke(policy_app, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == json.loads(json.dumps(policy_json_schema()))


def test_check_exits_0_on_the_packs_through_the_fjordgate_command() -> None:
    fjordgate = Path(sys.executable).parent / "fjordgate"
    result = subprocess.run(
        [str(fjordgate), "policy", "check", *map(str, PACK_FILES)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": ok (") == len(PACK_FILES)


@pytest.mark.parametrize("pack", PACK_FILES, ids=lambda p: p.stem)
def test_policy_test_passes_on_the_shipped_cases(pack: Path) -> None:
    result = runner.invoke(policy_app, ["test", str(pack), "--cases", str(CASES / pack.stem)])
    assert result.exit_code == 0, result.output
    assert " 0 failed" in result.output


def test_a_case_with_a_wrong_expectation_fails_with_a_readable_diff(tmp_path: Path) -> None:
    (tmp_path / "wrong.yaml").write_text(
        """
name: plate passes in clear (wrong on purpose)
stream: norway-traffic
event: {region: oslo, speed: 80, plate: EL12345, event_time: 1714564800000}
destination: "127.0.0.1:9092"
expect:
  outcome: allow
  fields: {plate: allow}
  egress_rule: strict.private-network
""",
        encoding="utf-8",
    )
    result = runner.invoke(
        policy_app, ["test", str(PACKS / "norway-strict.yaml"), "--cases", str(tmp_path)]
    )
    assert result.exit_code == 1
    out = result.output
    assert "FAIL" in out and "plate passes in clear" in out
    assert "fields.plate:\n    expected: allow\n    got:      pseudonymise" in out
    assert (
        "egress_rule:\n    expected: strict.private-network\n    got:      strict.loopback" in out
    )
    assert "0 passed, 1 failed" in out
    assert "outcome:" not in out  # what matched is not reported as a difference


def test_a_malformed_case_file_is_reported_with_its_location(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        "name: x\nstream: norway-traffic\nevent: {}\nexpect: {outcom: allow}\n", encoding="utf-8"
    )
    result = runner.invoke(
        policy_app, ["test", str(PACKS / "norway-strict.yaml"), "--cases", str(tmp_path)]
    )
    assert result.exit_code == 1
    assert f"{tmp_path / 'bad.yaml'}:4:10: unknown key 'outcom'" in result.output
    assert "did you mean 'outcome'" in result.output


def test_explain_shows_each_rule_and_why() -> None:
    event = json.dumps(
        {"region": "oslo", "speed": 80, "plate": "EL12345", "event_time": 1714564800000, "x": 1}
    )
    result = runner.invoke(
        policy_app,
        [
            "explain",
            str(PACKS / "norway-strict.yaml"),
            "--stream",
            "norway-traffic",
            "--event",
            event,
            "--destination",
            "10.0.0.8:9092",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    steps = {(s["rule_id"], s["result"]) for s in payload["steps"]}
    assert ("streams.norway-traffic.fields.plate", "matched") in steps
    assert ("streams.norway-traffic.fields.driver_id", "not matched") in steps
    assert ("streams.norway-traffic.undeclared_fields", "matched") in steps
    assert ("strict.loopback", "not matched") in steps
    assert ("strict.private-network", "matched") in steps
    assert payload["outcome"] == "allow"
    assert "EL12345" not in result.output


def test_explain_table_names_the_outcome_and_policy_hash() -> None:
    result = runner.invoke(
        policy_app,
        [
            "explain",
            str(PACKS / "norway-eea.yaml"),
            "--stream",
            "norway-traffic",
            "--event",
            '{"region": "oslo"}',
        ],
    )
    assert result.exit_code == 0
    assert "outcome: deny" in result.output
    assert "required field 'speed' is missing" in result.output
    assert load_policy(PACKS / "norway-eea.yaml").content_hash in result.output


def test_explain_rejects_bad_json_without_a_traceback() -> None:
    result = runner.invoke(
        policy_app,
        [
            "explain",
            str(PACKS / "norway-eea.yaml"),
            "--stream",
            "norway-traffic",
            "--event",
            "{not json",
        ],
    )
    assert result.exit_code == 2
    assert "not valid JSON" in result.output
    assert "Traceback" not in result.output


def test_diff_names_destinations_and_fields_that_change_outcome(tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(
        (PACKS / "norway-eea.yaml")
        .read_text(encoding="utf-8")
        .replace(
            "plate: {pii: vehicle_plate, action: pseudonymise, type: string}",
            "plate: {pii: vehicle_plate, action: drop, type: string}",
        )
        .replace("PL, PT, RO, SK, SI, ES, SE, IS, LI,", "PL, PT, RO, SK, SI, ES, IS, LI,"),
        encoding="utf-8",
    )
    result = runner.invoke(
        policy_app,
        ["diff", str(PACKS / "norway-eea.yaml"), str(new), "--exit-code"],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 1
    out = result.output
    assert "norway-traffic.plate" in out and "pseudonymise [vehicle_plate]" in out
    assert "server in SE, provider under SE" in out
    assert "server in DE, provider under DE" not in out


def test_diff_of_a_policy_with_itself_reports_nothing() -> None:
    pack = str(PACKS / "norway-strict.yaml")
    result = runner.invoke(policy_app, ["diff", pack, pack])
    assert result.exit_code == 0
    assert "no change in outcome (identical policies)" in result.output


def test_check_takes_a_directory_of_policies() -> None:
    result = runner.invoke(policy_app, ["check", str(PACKS)])
    assert result.exit_code == 0
    assert result.output.count(": ok (") == len(PACK_FILES)


def test_check_of_an_empty_directory_fails(tmp_path: Path) -> None:
    result = runner.invoke(policy_app, ["check", str(tmp_path)])
    assert result.exit_code == 1
    assert "no policy files" in result.output


def test_diff_names_placement_changes(tmp_path: Path) -> None:
    from policies import diff_policies, load_policy_text

    text = (PACKS / "norway-strict.yaml").read_text(encoding="utf-8")
    old = load_policy_text(text)
    new = load_policy_text(text.replace("max_swappiness: 10", "max_swappiness: 60"))
    changes = diff_policies(old, new)
    assert [(c.kind, c.subject, c.old, c.new) for c in changes] == [
        ("placement", "placement.max_swappiness", "10", "60")
    ]
