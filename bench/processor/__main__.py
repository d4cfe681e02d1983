"""`python -m bench.processor`: the seed job over events already in a Kafka topic.

Side by side in one run, on one broker, over the same topic:
- fjordgate's processor (Kafka source, RocksDB state, checkpoints every 10 s),
- Quix Streams running the same job (its own virtualenv: its pins conflict with ours),
- PyFlink (apache-flink + the Kafka connector jar), when it can run here,
- the floor: a raw confluent-kafka consumer that only parses the JSON.
Then throughput at several key cardinalities and the recovery time after
kill -9 with 1 million keys of state. Writes bench/results/processor.md.

Events span 10 one-minute windows of event time whatever their number, so
the number of live keys per window grows with the key cardinality.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bench.processor.floor import raw_consumer_floor
from processor import (
    Job,
    JobRunner,
    KafkaSource,
    Max,
    ProcessorConfig,
    ResultColumns,
    Sink,
    TumblingWindow,
    WindowResult,
)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "processor.md"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fjordgate"
QUIX_VENV = CACHE / "bench-quix"
FLINK_VENV = CACHE / "bench-flink"
BASE_MS = 1_764_000_000_000
SPAN_MS = 10 * 60_000


class CountingSink(Sink):
    """Discards results, counting them: the benchmark measures the processor, not a database."""

    kind = "null"

    def __init__(self) -> None:
        self.results = 0

    def destination(self) -> str:
        return "file:///dev/null"

    def open(self, job: str, columns: ResultColumns) -> None:
        pass

    def committed_offsets(self) -> dict[int, int] | None:
        return None

    def write(self, results: Sequence[WindowResult], offsets: Mapping[int, int]) -> None:
        self.results += len(results)

    def close(self) -> None:
        pass


def log(msg: str) -> None:
    print(f"[bench.processor] {msg}", file=sys.stderr, flush=True)


def produce(bootstrap: str, topic: str, events: int, keys: int, *, sequential: bool = False,
            span_ms: int = SPAN_MS, seed: int = 7) -> None:  # fmt: skip
    """Write `events` seed-job events (keyed by region) with 0-3 s of disorder."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(60)
    rng = random.Random(seed)
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000}
    )  # fmt: skip
    step = span_ms / events
    dumps = orjson.dumps
    for i in range(events):
        region = f"region-{i % keys if sequential else rng.randrange(keys)}"
        t = BASE_MS + int(i * step) - rng.randrange(3_000)
        value = dumps(
            {"event_time": t, "region": region, "speed": rng.randrange(2_000, 13_000) / 100}
        )
        while True:
            try:
                producer.produce(topic, key=region.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(120)


def seed_job(bootstrap: str, topic: str, sink: Sink) -> Job:
    return (
        Job("bench-norway-traffic")
        .source(KafkaSource(bootstrap, topic))
        .watermarks(out_of_orderness_ms=5_000, idle_timeout_ms=30_000)
        .key_by("region")
        .window(TumblingWindow(60_000))
        .aggregate(Max("speed"))
        .sink(sink)
    )


def run_fjordgate(bootstrap: str, topic: str, events: int, workdir: Path) -> dict[str, Any]:
    sink = CountingSink()
    state = workdir / f"fjordgate-{uuid.uuid4().hex[:6]}"
    runner = JobRunner(seed_job(bootstrap, topic, sink), ProcessorConfig(localdir=state))
    runner.start()
    t0 = time.perf_counter()
    metrics = runner.run(stop_at_end=True)
    seconds = time.perf_counter() - t0
    shutil.rmtree(state, ignore_errors=True)
    assert metrics.events_in == events, (metrics.events_in, events)
    return {"events": metrics.events_in, "results": sink.results, "seconds": seconds,
            "checkpoints": metrics.checkpoints, "flushes": metrics.state_flushes}  # fmt: skip


def ensure_quix() -> Path | None:
    python = QUIX_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {QUIX_VENV} for Quix Streams (its pins conflict with fjordgate's)")
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        done = subprocess.run([str(python), "-m", "pip", "install", "-q", "quixstreams", "orjson"])
        if done.returncode != 0:
            return None
    return python


def run_quix(bootstrap: str, topic: str, events: int, workdir: Path) -> dict[str, Any] | str:
    python = ensure_quix()
    if python is None:
        return "Quix Streams could not be installed"
    script = Path(__file__).with_name("quix_job.py")
    state = workdir / f"quix-{uuid.uuid4().hex[:6]}"
    done = subprocess.run(
        [str(python), str(script), bootstrap, topic, str(events), str(state)],
        capture_output=True, text=True,
    )  # fmt: skip
    shutil.rmtree(state, ignore_errors=True)
    if done.returncode != 0:
        return f"Quix Streams failed: {done.stderr.strip()[-300:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_flink(bootstrap: str, topic: str, events: int) -> dict[str, Any] | str:
    python = FLINK_VENV / "bin" / "python"
    script = Path(__file__).with_name("flink_job.py")
    if not python.exists():
        return (
            f"not run: no PyFlink environment at {FLINK_VENV} "
            "(python -m venv it and pip install apache-flink)"
        )
    empty = f"{topic}-empty"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(empty, num_partitions=1, replication_factor=1)])[empty].result(60)
    done = subprocess.run(
        [str(python), str(script), bootstrap, topic, str(events), empty],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        return f"PyFlink failed: {done.stderr.strip()[-400:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def recovery(bootstrap: str, workdir: Path, keys: int) -> dict[str, Any]:
    """kill -9 with `keys` keys of state in one open window; time to restore and resume."""
    topic = f"bench-recovery-{uuid.uuid4().hex[:6]}"
    log(f"recovery: producing {keys:,} events with {keys:,} keys in one window")
    produce(bootstrap, topic, keys, keys, sequential=True, span_ms=30_000)
    job = workdir / "recovery-job.yaml"
    job.write_text(
        "job: bench-recovery\n"
        f"source: {{kafka: {{bootstrap: '{bootstrap}', topic: {topic}}}}}\n"
        "watermarks: {out_of_orderness: 5 s}\nkey_by: region\nwindow: {tumbling: 1 min}\n"
        f"aggregate: {{max: speed}}\nsink: {{jsonl: {{path: {workdir / 'recovery.jsonl'}}}}}\n"
    )
    state = workdir / "recovery-state"
    config = workdir / "recovery.yaml"
    config.write_text(
        f"state.backend.rocksdb.localdir: {state}\nexecution.checkpointing.interval: 2 s\n"
    )
    fjordgate = Path(sys.executable).parent / "fjordgate"
    args = [str(fjordgate), "--log-json", "processor", "run", str(job), "--config", str(config)]
    chk_root = state / "checkpoints" / "bench-recovery"
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while True:
        metas = sorted(chk_root.glob("chk-*/_metadata.json"))
        if metas and json.loads(metas[-1].read_text())["offsets"].get("0") == keys:
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    size = json.loads(metas[-1].read_text())["size_bytes"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    restore_seconds = None
    while restore_seconds is None:
        line = proc.stderr.readline()
        if not line:
            break
        if '"job_started"' in line:
            restore_seconds = json.loads(line)["restore_seconds"]
    to_running = time.perf_counter() - t0
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait()
    return {"keys": keys, "checkpoint_bytes": size, "restore_seconds": restore_seconds,
            "spawn_to_running_seconds": to_running}  # fmt: skip


def eps(r: dict[str, Any] | str) -> float | None:
    return None if isinstance(r, str) else r["events"] / r["seconds"]


def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or b is None or b == 0 else f"{a / b:.2f}×"


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.processor", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="events per topic")
    parser.add_argument("--keys", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--large", action="store_true", help="also 10M keys over 10M events")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--recovery-keys", type=int, default=1_000_000)
    parser.add_argument("--skip-peers", action="store_true", help="only fjordgate and the floor")
    parser.add_argument(
        "--peer-events", type=int, default=200_000,
        help="Quix Streams reads only this many events of each topic (it is slow; default run "
        "stays short); its events/s is measured on them",
    )  # fmt: skip
    args = parser.parse_args()

    broker = None
    if args.bootstrap is None:
        sys.path.insert(0, str(ROOT / "deploy" / "kafka"))
        import localkafka  # type: ignore[import-not-found]

        log("starting a local Kafka broker")
        broker = localkafka.start_broker()
        bootstrap = broker.bootstrap
    else:
        bootstrap = args.bootstrap
    workdir = Path(tempfile.mkdtemp(prefix="fjordgate-bench-processor-"))
    cases = [(args.events, k) for k in args.keys]
    if args.large:
        cases.append((10_000_000, 10_000_000))
    rows = []
    try:
        for events, keys in cases:
            topic = f"bench-nt-{keys}-{events}-{uuid.uuid4().hex[:6]}"
            log(f"producing {events:,} events with {keys:,} keys to {topic}")
            produce(bootstrap, topic, events, keys)
            log("floor: raw consumer + JSON parse")
            floor = {"events": events, "seconds": raw_consumer_floor(bootstrap, topic, 1, events)}
            log("fjordgate")
            fg = run_fjordgate(bootstrap, topic, events, workdir)
            quix: dict[str, Any] | str = "skipped"
            flink: dict[str, Any] | str = "skipped"
            if not args.skip_peers:
                log("Quix Streams")
                quix = run_quix(bootstrap, topic, min(events, args.peer_events), workdir)
                if keys == args.keys[0]:
                    log("PyFlink")
                    flink = run_flink(bootstrap, topic, events)
            rows.append({"events": events, "keys": keys, "floor": floor, "fjordgate": fg,
                         "quix": quix, "flink": flink})  # fmt: skip
            log(f"  floor {fmt(eps(floor))}/s  fjordgate {fmt(eps(fg))}/s  quix {fmt(eps(quix))}/s")
        rec = recovery(bootstrap, workdir, args.recovery_keys)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if broker is not None:
            broker.remove()
    report = render(rows, rec)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    return 0


HEADER = (
    "| events | distinct keys | floor (raw consumer + JSON) | fjordgate | Quix Streams | PyFlink "
    "| fjordgate / Quix (goal ≥ 3×) | fjordgate / floor (goal ≥ 0.5×) |"
)


def render(rows: list[dict[str, Any]], rec: dict[str, Any]) -> str:
    out = ["# processor: the seed job (max speed per region per minute)", ""]
    out.append(
        "One Kafka partition, events already in the topic, 5 s bounded out-of-orderness, "
        "tumbling 1-minute event-time windows; results counted, not written (the sink is "
        "not measured). fjordgate checkpoints every 10 s during the run. Events per second, "
        "from the first message to the last processed. Quix Streams runs in its own "
        "virtualenv (it pins confluent-kafka < 2.13, pydantic < 2.14)."
    )
    out += ["", "## Throughput and ratios", "", HEADER, "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fl, fg, qx, pf = eps(r["floor"]), eps(r["fjordgate"]), eps(r["quix"]), eps(r["flink"])
        out.append(
            f"| {r['events']:,} | {r['keys']:,} | {fmt(fl)} | {fmt(fg)} | {fmt(qx)} | {fmt(pf)} "
            f"| {ratio(fg, qx)} | {ratio(fg, fl)} |"
        )
    for r in rows:
        for name in ("quix", "flink"):
            if isinstance(r[name], str) and r[name] != "skipped":
                out.append(f"\n- {r['keys']:,} keys, {name}: {r[name]}")
        flink = r["flink"]
        if isinstance(flink, dict) and "raw_seconds" in flink:
            raw = flink["events"] / flink["raw_seconds"]
            out.append(
                f"\n- PyFlink at {r['keys']:,} keys: {fmt(eps(flink))} events/s after subtracting "
                f"a warm job's start-up ({flink.get('startup_seconds', 0):.1f} s); "
                f"{fmt(raw)} events/s for the whole job (fjordgate / that: "
                f"{ratio(eps(r['fjordgate']), raw)})."
            )
    if len(rows) > 1:
        first = eps(rows[0]["fjordgate"])
        out += [
            "",
            "## fjordgate across key cardinalities",
            "",
            "| distinct keys | events/s | vs the first row (goal at 10M: ≥ 0.67×) |",
            "|---:|---:|---:|",
        ]
        for r in rows:
            fg = eps(r["fjordgate"])
            out.append(f"| {r['keys']:,} | {fmt(fg)} | {ratio(fg, first)} |")
    out += [
        "",
        "## Recovery after kill -9",
        "",
        "| keys of state | checkpoint size | state restore | spawn → running |",
        "|---:|---:|---:|---:|",
        f"| {rec['keys']:,} | {rec['checkpoint_bytes'] / 1e6:.1f} MB "
        f"| {rec['restore_seconds']:.2f} s | {rec['spawn_to_running_seconds']:.2f} s |",
        "",
        "'state restore' = RocksDB checkpoint restored and opened, watermarks and offsets "
        "loaded; 'spawn → running' adds the Python start-up of `fjordgate processor run`.",
    ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
