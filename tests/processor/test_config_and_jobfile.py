"""Flink-named configuration keys and YAML job files, with errors that say where."""

from __future__ import annotations

from pathlib import Path

import pytest

from processor import (
    ConfigError,
    HoppingWindow,
    JobDefinitionError,
    KafkaSource,
    Max,
    PostgresSink,
    ProcessorConfig,
    SessionWindow,
    SlidingWindow,
    TumblingWindow,
    load_job,
)

SEED = Path(__file__).resolve().parents[2] / "processor" / "jobs" / "norway-traffic.yaml"


def test_flink_state_keys_are_accepted_with_their_units(tmp_path: Path) -> None:
    path = tmp_path / "processor.yaml"
    path.write_text(
        "state.backend.rocksdb.localdir: /var/lib/fjordgate/state\n"
        "state.backend.rocksdb.writebuffer.size: 32mb\n"
        "state.backend.rocksdb.thread.num: 4\n"
        "state.backend.rocksdb.block.cache-size: 1 gb\n"
        "state.backend.incremental: false\n"
        "execution.checkpointing.interval: 30 s\n"
        "state.checkpoints.num-retained: 5\n"
        "kafka.session.timeout.ms: 6000\n"
    )
    config = ProcessorConfig.load(path)
    assert config.localdir == Path("/var/lib/fjordgate/state")
    assert config.write_buffer_size == 32 * 1024 * 1024
    assert config.thread_num == 4
    assert config.block_cache_size == 1024**3
    assert config.incremental is False
    assert config.checkpoint_interval_ms == 30_000
    assert config.checkpoints_retained == 5
    assert config.kafka == {"session.timeout.ms": "6000"}


def test_an_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    path = tmp_path / "processor.yaml"
    path.write_text("state.backend.rocksdb.writebufer.size: 32mb\n")
    with pytest.raises(ConfigError, match=r"unknown key 'state.backend.rocksdb.writebufer.size'"):
        ProcessorConfig.load(path)


def test_a_bad_size_says_how_to_write_one() -> None:
    with pytest.raises(ConfigError, match=r"e\.g\. 64mb"):
        ProcessorConfig.from_mapping({"state.backend.rocksdb.writebuffer.size": "lots"})


def test_the_seed_job_is_the_norway_traffic_max_speed_job() -> None:
    job = load_job(SEED, env={"FJORDGATE_PG_DSN": "postgresql://fg@127.0.0.1:5432/traffic"})
    assert isinstance(job.source_, KafkaSource) and job.source_.topic == "norway-traffic"
    assert job.out_of_orderness_ms == 5_000
    assert job.key_field == "region"
    assert job.window_ == TumblingWindow(60_000)
    assert isinstance(job.aggregation, Max) and job.aggregation.field == "speed"
    assert isinstance(job.sink_, PostgresSink) and job.sink_.table == "max_speed_per_region"
    assert job.result_columns().value == "max_speed"


def test_a_missing_environment_variable_is_named_with_its_line() -> None:
    with pytest.raises(
        JobDefinitionError, match=r"norway-traffic.yaml:\d+: dsn: .*FJORDGATE_PG_DSN"
    ):
        load_job(SEED, env={})


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ("{tumbling: 5 min}", TumblingWindow(300_000)),
        ("{hopping: {size: 10 min, advance: 1 min}}", HoppingWindow(600_000, 60_000)),
        ("{sliding: 30 s}", SlidingWindow(30_000)),
        ("{session: {gap: 45 s}}", SessionWindow(45_000)),
    ],
)
def test_every_window_type_can_be_written_in_yaml(
    tmp_path: Path, window: str, expected: object
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"job: j\nsource: {{locallog: {{path: {tmp_path / 'log'}, topic: t}}}}\nkey_by: region\n"
        f"window: {window}\naggregate: {{count: {{}}}}\nsink: {{jsonl: {{path: out.jsonl}}}}\n"
    )
    assert load_job(path).window_ == expected


def test_a_misspelt_top_level_key_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(
        f"job: j\nsource: {{locallog: {{path: {tmp_path / 'log'}, topic: t}}}}\nkey_by: region\n"
        "windw: {tumbling: 1 min}\naggregate: {max: speed}\nsink: {jsonl: {path: o.jsonl}}\n"
    )
    with pytest.raises(JobDefinitionError, match=r"job.yaml:4: unknown key 'windw'"):
        load_job(path)


def test_a_hopping_window_that_skips_time_is_refused() -> None:
    with pytest.raises(JobDefinitionError, match="advance"):
        HoppingWindow(60_000, 120_000)
