"""`fjordgate processor run | checkpoints | inspect-state` on an embedded job."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from gateway.cli import app
from processor import LocalLog

BASE = 1_764_000_000_000


def setup_job(tmp: Path) -> tuple[Path, Path]:
    with LocalLog.open(tmp / "log", partitions=2) as log:
        log.append_many(
            "traffic",
            [
                (f"r{i % 5}".encode(),
                 orjson.dumps({"event_time": BASE + i * 997, "region": f"r{i % 5}", "speed": i}))
                for i in range(400)
            ],
        )  # fmt: skip
    job = tmp / "job.yaml"
    job.write_text(
        "job: cli-test\n"
        f"source: {{locallog: {{path: {tmp / 'log'}, topic: traffic}}}}\n"
        "watermarks: {out_of_orderness: 5 s}\nkey_by: region\nwindow: {tumbling: 1 h}\n"
        f"aggregate: {{max: speed}}\nsink: {{sqlite: {{path: {tmp / 'out.db'}, table: t}}}}\n"
    )
    config = tmp / "processor.yaml"
    config.write_text(f"state.backend.rocksdb.localdir: {tmp / 'state'}\n")
    return job, config


def test_run_until_end_then_list_checkpoints_and_inspect_state(tmp_path: Path) -> None:
    job, config = setup_job(tmp_path)
    cli = CliRunner()
    before = REGISTRY.get_sample_value("fjordgate_processor_events_total", {"job": "cli-test"}) or 0

    run = cli.invoke(app, ["processor", "run", str(job), "--config", str(config), "--until-end"])
    assert run.exit_code == 0, run.output
    metrics = json.loads(run.stdout[run.stdout.index("{") :])
    assert metrics["events_in"] == 400
    assert metrics["results_emitted"] == 5
    after = REGISTRY.get_sample_value("fjordgate_processor_events_total", {"job": "cli-test"})
    assert after == before + 400

    listed = cli.invoke(app, ["processor", "checkpoints", str(job), "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    (line,) = [x for x in listed.stdout.splitlines() if x.startswith("{")]
    checkpoint = json.loads(line)
    assert sum(checkpoint["offsets"].values()) == 400

    inspected = cli.invoke(app, ["processor", "inspect-state", str(job), "--config", str(config)])
    assert inspected.exit_code == 0, inspected.output
    state = json.loads(inspected.stdout[inspected.stdout.index("{") :])
    assert state["checkpoint"] == checkpoint["id"]
    # The bounded run fired and purged every window before its final checkpoint.
    assert sum(state[f"partition {p}"]["entries"] for p in (0, 1)) == 0


def test_inspect_state_shows_open_windows_of_an_interrupted_run(tmp_path: Path) -> None:
    from processor import JobRunner, ProcessorConfig, load_job

    job, _config = setup_job(tmp_path)
    runner = JobRunner(load_job(job), ProcessorConfig(localdir=tmp_path / "state"))
    runner.start()
    runner.step()
    runner.checkpoint()
    runner.close()
    config = tmp_path / "processor.yaml"
    out = CliRunner().invoke(app, ["processor", "inspect-state", str(job), "--config", str(config)])
    assert out.exit_code == 0, out.output
    state = json.loads(out.stdout[out.stdout.index("{") :])
    rows = state["partition 0"]["rows"] + state["partition 1"]["rows"]
    assert sorted(r["key"] for r in rows) == ["r0", "r1", "r2", "r3", "r4"]
    assert max(r["accumulator"] for r in rows) == 399


def test_a_bad_job_file_exits_2_with_the_line(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(f"job: x\nsource: {{locallog: {{path: {tmp_path / 'l'}, topic: t}}}}\n")
    out = CliRunner().invoke(app, ["processor", "run", str(job)])
    assert out.exit_code == 2
    assert "job.yaml" in out.output and "key_by" in out.output


def test_a_policy_that_cannot_be_loaded_stops_the_job_before_it_starts(tmp_path: Path) -> None:
    job, config = setup_job(tmp_path)
    (tmp_path / "geo").mkdir()
    out = CliRunner().invoke(
        app,
        ["processor", "run", str(job), "--config", str(config), "--until-end",
         "--policy", str(tmp_path / "missing.yaml"), "--geo-dir", str(tmp_path / "geo")],
    )  # fmt: skip
    assert out.exit_code == 2
    assert "fjordgate processor run:" in out.output
    assert not (tmp_path / "out.db").exists()
