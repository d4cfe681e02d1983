"""Gateway benchmarks, side by side in one run, as ratio tables.

Run: .venv/bin/python -m bench.gateway [--quick]

1. pipeline: in-process cost per event of the whole pipeline (parse → validate
   → tag → decide → transform → audit record → publish message) against the
   floor `orjson.loads` + `orjson.dumps` of the same event (goal ≤ 3×), as
   shipped (the compiled core, gateway/native.py) and with the Python steps only;
   and with 32 batches kept alive, as a served gateway's are while they wait
   to be committed.
2. servers: the same embedded gateway (audit fsync + local-log fsync) behind
   the shipped plain ASGI app under uvicorn (uvloop and httptools, as shipped;
   asyncio's loop and h11) and under granian, and behind Starlette under
   uvicorn: events/s of 500-event batches.
3. end to end, Kafka: `fjordgate gateway serve` (HTTP batch → audit fsync →
   Kafka transaction) events/s against a raw confluent-kafka producer sending
   the same bytes to the same broker (goal ≥ 0.5×), and against a bare
   transactional producer sending the gateway's messages in transactions of
   the gateway's mean size (the ceiling of the transactional design); the
   gateway's and the broker's CPU per event; p50/p99 latency at a fixed rate.

Writes bench/results/gateway.md.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gateway.md"
STREAM = "norway-traffic"
BATCH = 500


def _events(count: int, seed: int) -> list[dict[str, Any]]:
    from gateway.synthetic import TrafficGenerator

    return TrafficGenerator(seed=seed).batch(count)


def _table(title: str, header: list[str], rows: list[list[str]]) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- 1. pipeline ------------------------------------------------------------------------------


def _shipped_pipeline() -> Any:
    """The pipeline of the bench stream under the shipped Norway policy, with a fresh key."""
    from gateway import Topics, build_pipeline, pii_tools
    from gateway.demo import norway_strict_pack
    from gateway.pii import Keyring
    from policies import PolicyEngine, load_policy

    policy = load_policy(norway_strict_pack())
    return build_pipeline(
        policy,
        PolicyEngine(policy),
        STREAM,
        pii_tools(Keyring.ephemeral()),
        topics=Topics(),
        destination="local://127.0.0.1/log",
    )


def _new_identifiers(event: dict[str, Any], n: int) -> dict[str, Any]:
    """`event` with a driver and plate no other event has (same shapes as the generator's)."""
    return {**event, "driver_id": f"{10_000_000_000 + n * 7_919:011d}", "plate": f"EL {n:05d}"}


def bench_pipeline(count: int, runs: int) -> str:
    import gc

    from gateway import EventRecord, native, record
    from gateway.server import tune_gc

    pipeline = _shipped_pipeline()  # as the gateway runs it: the compiled core, then the steps
    python_only = _shipped_pipeline()
    python_only.native = None
    # Fresh events for every run (seeds 1, 2, ...), the floor and the pipelines on the same
    # ones: run again over the same events, the pipeline's caches would find every unique
    # text (the notes with a new phone number) already scanned, which a stream never does.
    event_sets = [[orjson.dumps(e) for e in _events(count, seed=1 + n)] for n in range(runs + 1)]
    # The generator draws drivers and plates from 200 of each, so nearly every pseudonym
    # is a cache hit; a road's traffic is mostly new plates. The same events with a new
    # driver and plate each show that case too (other seeds: their notes are new as well).
    unique_sets = [
        [
            orjson.dumps(_new_identifiers(e, n * count + i))
            for i, e in enumerate(_events(count, seed=1_001 + n))
        ]
        for n in range(runs)
    ]

    def batches_of(raws: list[bytes]) -> list[list[bytes]]:
        return [raws[i : i + BATCH] for i in range(0, count, BATCH)]

    def floor(raws: list[bytes], alive: deque[Any] | None = None) -> float:
        t = time.perf_counter()
        if alive is None:
            for raw in raws:
                orjson.dumps(orjson.loads(raw))
        else:
            for batch in batches_of(raws):
                alive.append([orjson.dumps(orjson.loads(raw)) for raw in batch])
        return (time.perf_counter() - t) / count

    def full(which: Any, raws: list[bytes], alive: deque[Any] | None = None) -> float:
        # As the gateway runs it: a request's batch at a time, its records made as the
        # HTTP ingress makes them (compiled, or in Python when the core is off), then
        # Pipeline.run_batch. With `alive`, each batch's records are kept there (the
        # oldest freed), as a served batch's are until its group is committed.
        make = native.make_records if which.native is not None else record.make_records
        batches = batches_of(raws)
        t = time.perf_counter()
        for batch in batches:
            records = make(STREAM, batch)
            which.run_batch(records)
            if alive is not None:
                alive.append(records)
        return (time.perf_counter() - t) / count

    # Under load a served batch's records live until its group is committed: with
    # bench/gateway's 32 clients about 32 batches (16,000 events) are in flight, and the
    # objects of each new batch land in memory the processor's caches no longer hold.
    # The same runs with that many batches kept alive, the deques filled first.
    in_flight = 32
    floor_alive: deque[Any] = deque(maxlen=in_flight)
    full_alive: deque[Any] = deque(maxlen=in_flight)

    # As `fjordgate gateway serve` runs once started: start-up objects frozen, the
    # collector's first threshold raised (gateway.server.tune_gc). Undone at the end.
    thresholds = gc.get_threshold()
    tune_gc()
    while len(full_alive) < in_flight:  # filled before the runs (--quick: several passes)
        floor(event_sets[runs], floor_alive)
        full(pipeline, event_sets[runs], full_alive)
    # Interleaved, each on the same fresh set in turn; the best run of each counts.
    floor_s = full_s = python_s = float("inf")
    unique_floor_s = unique_full_s = unique_python_s = float("inf")
    alive_floor_s = alive_full_s = float("inf")
    for raws, unique in zip(event_sets[:runs], unique_sets, strict=True):
        floor_s = min(floor_s, floor(raws))
        full_s = min(full_s, full(pipeline, raws))
        alive_floor_s = min(alive_floor_s, floor(raws, floor_alive))
        alive_full_s = min(alive_full_s, full(pipeline, raws, full_alive))
        python_s = min(python_s, full(python_only, raws))
        unique_floor_s = min(unique_floor_s, floor(unique))
        unique_full_s = min(unique_full_s, full(pipeline, unique))
        unique_python_s = min(unique_python_s, full(python_only, unique))
    # Per Python step: one more fresh set, timing each step's pass over a batch.
    per_step = {step.name: 0.0 for step in python_only.steps}
    for batch in batches_of(event_sets[runs]):
        records = [EventRecord(STREAM, i, raw) for i, raw in enumerate(batch)]
        for step in python_only.steps:
            t = time.perf_counter()
            step.batch(records)
            per_step[step.name] += time.perf_counter() - t
    floor_alive.clear()
    full_alive.clear()
    gc.unfreeze()
    gc.set_threshold(*thresholds)
    rows = [
        ["floor: orjson.loads + orjson.dumps", f"{floor_s * 1e6:.2f}", "1.0×"],
        [
            "fjordgate pipeline as shipped (compiled core, Python steps for the rest)",
            f"{full_s * 1e6:.1f}",
            f"{full_s / floor_s:.1f}×",
        ],
        [
            "fjordgate pipeline, Python steps only (FJORDGATE_NATIVE=0)",
            f"{python_s * 1e6:.1f}",
            f"{python_s / floor_s:.1f}×",
        ],
    ]
    rows += [
        [
            "floor, every event a new driver and plate",
            f"{unique_floor_s * 1e6:.2f}",
            "1.0×",
        ],
        [
            "fjordgate pipeline as shipped, every event a new driver and plate",
            f"{unique_full_s * 1e6:.1f}",
            f"{unique_full_s / unique_floor_s:.1f}×",
        ],
        [
            "fjordgate pipeline, Python steps only, every event a new driver and plate",
            f"{unique_python_s * 1e6:.1f}",
            f"{unique_python_s / unique_floor_s:.1f}×",
        ],
    ]
    rows += [
        [
            f"floor, {in_flight * BATCH:,} events' outputs kept alive (as in flight)",
            f"{alive_floor_s * 1e6:.2f}",
            "1.0×",
        ],
        [
            f"fjordgate pipeline as shipped, {in_flight * BATCH:,} events' records kept alive",
            f"{alive_full_s * 1e6:.1f}",
            f"{alive_full_s / alive_floor_s:.1f}×",
        ],
    ]
    rows += [
        [f"  Python step {name}", f"{total / count * 1e6:.1f}", f"{total / count / floor_s:.1f}×"]
        for name, total in per_step.items()
    ]
    return _table(
        f"Pipeline cost per event ({count:,} synthetic norway-traffic events, "
        f"best of {runs}, fresh events each run, floors and pipelines interleaved, "
        "collector tuned as the server runs it (tune_gc); goal ≤ 3× the floor)",
        ["what", "µs / event", "× floor"],
        rows,
    )


# -- load driving -----------------------------------------------------------------------------


def _bodies(count: int, seed: int) -> list[bytes]:
    events = _events(count, seed)
    return [orjson.dumps(events[i : i + BATCH]) for i in range(0, len(events), BATCH)]


# The answer's counts come first (gateway/ingest.py writes "stream", "policy", then
# "accepted"), before the per-event results.
_ACCEPTED = re.compile(rb'\A\{"stream":"[^"\\]*","policy":"[^"\\]*","accepted":(\d+),')
# One answer in this many is parsed whole and its count compared with the one read.
CHECK_EVERY = 64


def accepted_count(answer: bytes, check: bool = False) -> int:
    """The events an answer of the gateway accepted. Read from the answer's head, without
    parsing its per-event results: parsing a 500-event answer (97 kB) with orjson took
    0.83-0.96 ms, 1.7-1.9 µs per event of the load generator's 1.9-2.1 µs of CPU (32
    clients), on the two cores the gateway and the broker use too. An answer whose head
    is not as expected is parsed whole; with `check`, any answer is, and a count that
    differs from the one read is an error."""
    head = _ACCEPTED.match(answer)
    if head is None or check:
        count = orjson.loads(answer)["accepted"]
        if not isinstance(count, int):
            raise RuntimeError(f"the gateway's answer has accepted={count!r}, not a count")
        if head is not None and int(head.group(1)) != count:
            raise RuntimeError(
                f"the answer's head says {head.group(1).decode()} accepted, its body {count}"
            )
        return count
    return int(head.group(1))


def drive(
    url: str, key: str, bodies: list[bytes], seconds: float, threads: int
) -> tuple[int, float, dict[int, int]]:
    """Post bodies from `threads` clients until they run out or time is up; events acknowledged."""
    lock = threading.Lock()
    next_body = [0]
    acked = [0]
    statuses: dict[int, int] = {}
    deadline = time.monotonic() + seconds

    where = urlsplit(url)
    path = f"/v1/streams/{STREAM}/events"
    headers = {"X-API-Key": key, "Content-Type": "application/json"}

    def worker() -> None:
        # The standard library's client and orjson: the load generator shares the machine
        # with the gateway and the broker, and httpx with its JSON took 7.3 µs of CPU per
        # event (a third of a core at 44,000 events/s), the gateway's CPU to lose. The
        # answers' counts are read from their heads (`accepted_count`), one in
        # CHECK_EVERY parsed whole and compared.
        conn = http.client.HTTPConnection(where.hostname, where.port, timeout=60)
        try:
            while time.monotonic() < deadline:
                with lock:
                    i = next_body[0]
                    next_body[0] += 1
                if i >= len(bodies):
                    return
                conn.request("POST", path, body=bodies[i], headers=headers)
                response = conn.getresponse()
                data = response.read()
                count = 0
                if response.status == 200:
                    count = accepted_count(data, check=i % CHECK_EVERY == 0)
                with lock:
                    statuses[response.status] = statuses.get(response.status, 0) + 1
                    acked[0] += count
        finally:
            conn.close()

    started = time.monotonic()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return acked[0], time.monotonic() - started, statuses


def fixed_rate(url: str, key: str, rate: int, seconds: float, seed: int) -> list[float]:
    """Latencies (s) of 100-event batches posted at `rate` events/s."""
    per = 100
    interval = per / rate
    count = int(seconds / interval)
    events = _events(per * count, seed)  # once: not once per body
    bodies = [orjson.dumps(events[i : i + per]) for i in range(0, per * count, per)]
    latencies: list[float] = []
    with httpx.Client(
        headers={"X-API-Key": key, "Content-Type": "application/json"}, timeout=60
    ) as client:
        start = time.monotonic()
        for n, body in enumerate(bodies):
            wait = start + n * interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            t = time.perf_counter()
            response = client.post(f"{url}/v1/streams/{STREAM}/events", content=body)
            latencies.append(time.perf_counter() - t)
            assert response.status_code == 200, response.text
    return latencies


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], path: str = "/healthz") -> None:
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            httpx.post(url + f"/v1/streams/{STREAM}/events", content=b"[]", timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- 2. servers -------------------------------------------------------------------------------


def bench_servers(seconds: float, events: int) -> str:
    """Each server/framework twice (forward, then reverse order, best kept: the machine
    drifts), with 500-event batches (the normal case) and 1-event requests (where the
    HTTP layer's own cost shows)."""
    from gateway import hash_api_key, new_api_key

    key = new_api_key()
    big = _bodies(events, seed=2)
    small = [orjson.dumps([e]) for e in _events(20_000, seed=5)]
    work = Path(tempfile.mkdtemp(prefix="fjg-bench-servers-"))
    env = {
        **os.environ,
        "FJG_BENCH_DIR": str(work),
        "FJG_BENCH_DIGEST": hash_api_key(key),
        "PYTHONPATH": str(ROOT),
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.gateway.apps:app", "--log-level", "warning"]
    shipped_server = [*uvicorn, "--no-access-log", "--loop", "uvloop", "--http", "httptools"]
    configs: list[tuple[str, list[str], str]] = [
        ("uvicorn (uvloop, httptools) + plain ASGI (shipped)", shipped_server, "plain"),
        (
            "uvicorn (asyncio loop, h11) + plain ASGI",
            [*uvicorn, "--no-access-log", "--loop", "asyncio", "--http", "h11"],
            "plain",
        ),
        ("uvicorn (uvloop, httptools) + Starlette", shipped_server, "starlette"),
    ]
    if importlib.util.find_spec("granian") is not None:
        granian = [sys.executable, "-m", "granian", "--interface", "asgi", "--workers", "1"]
        configs.append(
            (
                "granian + plain ASGI",
                [*granian, "--log-level", "warning", "--no-ws", "bench.gateway.apps:app"],
                "plain",
            )
        )
    best: dict[tuple[str, str], float] = {}
    answers: dict[str, dict[int, int]] = {}
    for order in (configs, list(reversed(configs))):
        for name, command, kind in order:
            port = _free_port()
            args = [*command, "--host", "127.0.0.1", "--port", str(port)]
            proc = subprocess.Popen(
                args,
                env={**env, "FJG_BENCH_APP": kind},
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                url = f"http://127.0.0.1:{port}"
                _wait_http(url, proc)
                for size, bodies in (("batch", big), ("single", small)):
                    acked, elapsed, statuses = drive(url, key, bodies, seconds / 2, threads=4)
                    rate = acked / elapsed
                    best[(name, size)] = max(best.get((name, size), 0.0), rate)
                    merged = answers.setdefault(name, {})
                    for code, n in statuses.items():
                        merged[code] = merged.get(code, 0) + n
            finally:
                _stop(proc)
    shutil.rmtree(work, ignore_errors=True)
    shipped = configs[0][0]
    rows = [
        [
            name,
            f"{best[(name, 'batch')]:,.0f}",
            f"{best[(name, 'batch')] / best[(shipped, 'batch')]:.2f}×",
            f"{best[(name, 'single')]:,.0f}",
            f"{best[(name, 'single')] / best[(shipped, 'single')]:.2f}×",
            ", ".join(f"{k}: {v}" for k, v in sorted(answers[name].items())),
        ]
        for name, _, _ in configs
    ]
    return _table(
        "HTTP server and framework: the same embedded gateway (audit fsync + local-log "
        f"fsync), 4 client threads, best of 2 rounds of {seconds / 2:.0f} s each",
        [
            "server",
            f"events/s, {BATCH}-event batches",
            "× shipped",
            "events/s, 1 event per request",
            "× shipped",
            "HTTP answers",
        ],
        rows,
    )


# -- 3. end to end with Kafka -----------------------------------------------------------------


def _start_kafka() -> Any:
    spec = importlib.util.spec_from_file_location(
        "fjg_localkafka", ROOT / "deploy" / "kafka" / "localkafka.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fjg_localkafka"] = module
    spec.loader.exec_module(module)
    return module.start_broker()


def _gateway_config(
    work: Path, bootstrap: str, digest: str, port: int, lanes: int | None = None
) -> Path:
    from audit import SigningKey
    from gateway.demo import norway_strict_pack
    from gateway.pii import Keyring

    policy = yaml.safe_load(norway_strict_pack().read_text())
    policy["mode"] = "observe"  # no GeoIP database or tuned sysctl on a bench machine
    (work / "policy.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False))
    SigningKey.create(work / "audit-key.pem")
    Keyring.generate(work / "keyring.json")
    kafka: dict[str, Any] = {
        "bootstrap": bootstrap,
        "transactional_id": f"bench-{port}",
        "partitions": 3,
    }
    if lanes is not None:
        kafka["lanes"] = lanes
    config = {
        "policy": "policy.yaml",
        "keyring": "keyring.json",
        "audit": {"directory": "audit", "signing_key": "audit-key.pem"},
        "kafka": kafka,
        "http": {"host": "127.0.0.1", "port": port},
        "api_keys": [{"name": "bench", "digest": digest, "streams": [STREAM]}],
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def raw_producer(bootstrap: str, topic: str, values: list[bytes]) -> float:
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5}
    )
    t = time.perf_counter()
    for value in values:
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    producer.flush(60)
    return len(values) / (time.perf_counter() - t)


def transactional_producer(
    bootstrap: str, topic: str, messages: list[Any], per: int, seconds: float, name: str
) -> tuple[int, float]:
    """(messages sent, seconds taken) by a bare transactional producer for about `seconds`:
    `per` messages per transaction, the gateway's own messages (value, key, headers), no
    HTTP, audit or pipeline. What any design that commits groups of that size in Kafka
    transactions can reach at most."""
    from confluent_kafka import Producer

    if not 0 < per <= len(messages):
        raise ValueError(f"{per} messages per transaction, from {len(messages)}")
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": name, "linger.ms": 50})
    producer.init_transactions(30)
    sent = start = 0
    t = time.perf_counter()
    while time.perf_counter() - t < seconds:
        if start + per > len(messages):
            start = 0  # every transaction a whole group
        producer.begin_transaction()
        for m in messages[start : start + per]:
            producer.produce(topic, value=m.value, key=m.key, headers=m.headers)
        producer.commit_transaction(30)
        start += per
        sent += per
    return sent, time.perf_counter() - t


def _gateway_messages(count: int, seed: int) -> list[Any]:
    """The messages the gateway publishes for `count` generated events (run in-process)."""
    from gateway import EventRecord

    pipeline = _shipped_pipeline()
    records = [EventRecord(STREAM, i, orjson.dumps(e)) for i, e in enumerate(_events(count, seed))]
    pipeline.run_batch(records)
    return [r.message for r in records if r.message is not None]


def _cpu_seconds(pid: int, thread: str = "") -> float:
    """User + system CPU time so far (from /proc) of every thread of a process, or of
    those whose name contains `thread`."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{task}/stat").read_text()
            if thread and thread not in Path(f"/proc/{pid}/task/{task}/comm").read_text():
                continue
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _warm_broker(bootstrap: str, pid: int, messages: list[Any], limit_s: float = 300.0) -> str:
    """Run transactions of the gateway's messages until the broker is warm: its JIT
    compiler threads idle (under 3% of a core) and its rate no longer rising, for three
    5-second rounds in a row. Returns what it took, for the report.

    Measured on a fresh broker here: the compiler threads used 30-50% of a core for the
    first 30 s and settled after 60-120 s, while the broker's transactional rate rose
    from 53,000 to 176,000 events/s over three minutes. Measured within 25 s, the
    gateway met a broker that spent a third of a core compiling (4.3 µs of the broker's
    10.8 µs of CPU per gateway event), and the raw floor, measured last, a warmer one. A
    production broker has run for weeks."""
    from gateway.publish import ensure_topics

    ensure_topics(bootstrap, ["bench-warm-up"], partitions=3)
    raw_producer(bootstrap, "bench-warm-up", [orjson.dumps(e) for e in _events(100_000, 9)])
    started = time.monotonic()
    rounds: list[tuple[float, float]] = []  # (events/s, share of a core compiling)
    while True:
        compiled = _cpu_seconds(pid, "Compiler")
        sent, took = transactional_producer(
            bootstrap, "bench-warm-up", messages, 2_000, 5.0, "warm-up"
        )
        rounds.append((sent / took, (_cpu_seconds(pid, "Compiler") - compiled) / took))
        elapsed = time.monotonic() - started
        last, before = rounds[-3:], rounds[:-3]
        settled = (
            len(before) >= 3
            and all(c < 0.03 for _, c in last)
            and max(r for r, _ in last) < 1.05 * max(r for r, _ in before)
        )
        if settled or elapsed > limit_s:
            break
        print(
            f"[bench] warming the broker: {elapsed:.0f} s, {rounds[-1][0]:,.0f} events/s "
            f"in transactions, compiler {rounds[-1][1]:.0%} of a core",
            file=sys.stderr,
            flush=True,
        )
    return (
        f"The broker was warmed for {elapsed:.0f} s first (transactions of 2,000 of the "
        f"gateway's messages: {rounds[0][0]:,.0f} events/s in the first 5 s, "
        f"{rounds[-1][0]:,.0f} in the last; its JIT compiler used "
        f"{rounds[-1][1]:.0%} of a core at the end{'' if settled else '; stopped at the limit'}).\n"
    )


def _metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise RuntimeError(f"metric {name} not found")


# The gateway's histograms of a group's commit and its two halves (gateway/metrics.py).
_GROUP_TIMES = ("commit", "audit_fsync", "publish")


def _group_times(url: str) -> dict[str, float]:
    """Sums and counts so far of the histograms in `_GROUP_TIMES`."""
    return {
        f"{name}_{part}": _metric(url, f"fjordgate_{name}_seconds_{part}")
        for name in _GROUP_TIMES
        for part in ("sum", "count")
    }


class _Served:
    """`fjordgate gateway serve` in a subprocess, on the given broker."""

    def __init__(self, bootstrap: str, lanes: int | None = None) -> None:
        from gateway import hash_api_key, new_api_key

        self.work = Path(tempfile.mkdtemp(prefix="fjg-bench-kafka-"))
        self.key = new_api_key()
        port = _free_port()
        config = _gateway_config(self.work, bootstrap, hash_api_key(self.key), port, lanes)
        fjordgate = shutil.which("fjordgate", path=os.path.dirname(sys.executable)) or "fjordgate"
        with (self.work / "gateway.log").open("wb") as log:
            self.proc = subprocess.Popen(
                [fjordgate, "--log-level", "WARNING", "gateway", "serve", "--config", str(config)],
                cwd=self.work,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        self.url = f"http://127.0.0.1:{port}"
        _wait_http(self.url, self.proc)

    def stop(self) -> None:
        _stop(self.proc)
        shutil.rmtree(self.work, ignore_errors=True)


# More events per second than any gateway run here takes (bodies are refilled below it).
_MAX_RATE = 300_000


@dataclass
class _Totals:
    """One configuration's runs added up (the main one runs several rounds)."""

    acked: int = 0
    elapsed: float = 0.0
    answers: Counter[int] = field(default_factory=Counter)
    gateway_cpu: float = 0.0
    broker_cpu: float = 0.0
    client_cpu: float = 0.0
    spent: Counter[str] = field(default_factory=Counter)  # the group histograms' sums
    rounds: list[float] = field(default_factory=list)  # events/s of each round


def bench_kafka(
    seconds: float, events: int, rate: int, clients: Sequence[int], rounds: int = 3
) -> str:
    """End to end against a raw producer on the same broker. `clients[0]` is the number of
    concurrent clients of the main measurement (each posts its next batch when the last
    is answered, so with few clients the commit latency, not the gateway, sets the rate);
    the shipped lanes are measured with each count in `clients`. The main configuration
    runs `rounds` times, the raw producer before the gateway's runs and after each of
    those rounds: the ratio is of their means, and each round's against the raw runs
    either side of it is shown too."""
    from gateway.config import KafkaConfig
    from gateway.publish import ensure_topics

    broker = _start_kafka()
    try:
        shipped_lanes = KafkaConfig(bootstrap="x").lanes
        fresh = bodies = _bodies(events, seed=3)
        refills = 0
        messages = _gateway_messages(50_000, seed=5)
        runs: dict[tuple[int, int], dict[str, Any]] = {}
        used = 0
        latencies: list[float] = []
        # A warm broker, as in production (see _warm_broker).
        warmed = _warm_broker(broker.bootstrap, broker.pid, messages)
        ensure_topics(broker.bootstrap, ["bench-txn"], partitions=3)
        ensure_topics(broker.bootstrap, ["bench-raw"], partitions=3)
        # A fixed count, not what the gateway managed: a short run measures mostly the
        # producer's start (connections, metadata) and would make the floor look slow.
        values = [orjson.dumps(e) for e in _events(200_000, seed=3)]
        # The floor is measured before the gateway's runs and after each round of the main
        # configuration, and their mean taken: on one broker it moved 264,000-314,000
        # events/s within three minutes (and the gateway 131,000-154,000), so a single
        # floor, run last as before, set the ratio by where in its drift it fell.
        raws: list[tuple[float, float]] = []  # (events/s, broker CPU per event)

        def raw_run() -> None:
            cpu_before = _cpu_seconds(broker.pid)
            raw = raw_producer(broker.bootstrap, "bench-raw", values)
            raws.append((raw, (_cpu_seconds(broker.pid) - cpu_before) / len(values)))

        raw_run()
        for lanes in dict.fromkeys((1, shipped_lanes)):
            served = _Served(broker.bootstrap, lanes)
            try:
                # Warm up: connections, first transactions.
                drive(served.url, served.key, bodies[used : used + 4], 30, threads=1)
                used += 4
                for count in clients if lanes == shipped_lanes else clients[:1]:
                    main = lanes == shipped_lanes and count == clients[0]
                    total = _Totals()
                    for _ in range(rounds if main else 1):
                        if len(bodies) - used < _MAX_RATE * seconds / BATCH:
                            # The same events again, each id with a tag of its own: the
                            # gateway would answer events it has published as duplicates.
                            refills += 1
                            tag = b'"event_id":"%d-' % refills
                            bodies = [b.replace(b'"event_id":"', tag) for b in fresh]
                            used = 0
                        before = _group_times(served.url)
                        cpu = _cpu_seconds(served.proc.pid), _cpu_seconds(broker.pid)
                        client_cpu = time.process_time()  # the load generator's threads
                        acked, elapsed, statuses = drive(
                            served.url, served.key, bodies[used:], seconds, threads=count
                        )
                        total.client_cpu += time.process_time() - client_cpu
                        total.gateway_cpu += _cpu_seconds(served.proc.pid) - cpu[0]
                        total.broker_cpu += _cpu_seconds(broker.pid) - cpu[1]
                        if used + -(-acked // BATCH) >= len(bodies):
                            raise RuntimeError(
                                f"the bench ran out of bodies ({len(bodies)}): raise _MAX_RATE"
                            )
                        after = _group_times(served.url)
                        total.spent.update({k: after[k] - before[k] for k in after})
                        total.acked += acked
                        total.elapsed += elapsed
                        total.answers.update(statuses)
                        total.rounds.append(acked / elapsed)
                        used += -(-acked // BATCH) + count
                        if main:
                            raw_run()
                    spent, acked = total.spent, max(total.acked, 1)
                    # Mean milliseconds per group of the commit and its two halves.
                    mean_ms = {
                        name: 1000 * spent[f"{name}_sum"] / max(spent[f"{name}_count"], 1)
                        for name in _GROUP_TIMES
                    }
                    runs[lanes, count] = {
                        "rate": total.acked / total.elapsed,
                        "rounds": total.rounds,
                        "answers": dict(total.answers),
                        "per_group": total.acked / max(spent["publish_count"], 1),
                        "group_ms": mean_ms,
                        "gateway_cpu": total.gateway_cpu / acked,
                        "broker_cpu": total.broker_cpu / acked,
                        "client_cpu": total.client_cpu / acked,
                    }
                if lanes == shipped_lanes:
                    latencies = fixed_rate(served.url, served.key, rate, min(seconds, 8.0), seed=4)
            finally:
                served.stop()
        # The transactional floor: the gateway's messages in transactions as large as the
        # shipped gateway's were on average, from a bare producer.
        per_group = max(1, round(runs[shipped_lanes, clients[0]]["per_group"]))
        cpu_before = _cpu_seconds(broker.pid)
        sent, took = transactional_producer(
            broker.bootstrap, "bench-txn", messages, per_group, seconds, "txn-floor"
        )
        txn_rate = sent / took
        txn_broker = (_cpu_seconds(broker.pid) - cpu_before) / sent
    finally:
        broker.remove()  # its gigabytes of data too
    latencies.sort()
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    raw_rate = statistics.mean(r for r, _ in raws)
    raw_broker = statistics.mean(c for _, c in raws)
    main_run = runs[shipped_lanes, clients[0]]
    # Each round of the main configuration against the floor's runs either side of it.
    round_ratios = [
        rate_ / statistics.mean((raws[i][0], raws[i + 1][0]))
        for i, rate_ in enumerate(main_run["rounds"])
    ]
    rows = [
        [
            "raw confluent-kafka producer, same event bytes, same broker (acks=all, "
            f"idempotent): the mean of {len(raws)} runs, before the gateway's and after each "
            f"round of the main one ({min(r for r, _ in raws):,.0f}-"
            f"{max(r for r, _ in raws):,.0f})",
            f"{raw_rate:,.0f}",
            "1.00×",
            "–",
            f"{raw_broker * 1e6:.1f}",
            "–",
            "–",
        ],
        [
            f"bare transactional producer, the gateway's messages (key, headers), {per_group:,} "
            "per transaction (the shipped gateway's mean)",
            f"{txn_rate:,.0f}",
            f"{txn_rate / raw_rate:.3f}×",
            "–",
            f"{txn_broker * 1e6:.1f}",
            "–",
            f"{per_group:,}",
        ],
    ]
    for (lanes, count), run in runs.items():
        shipped = " (shipped default)" if lanes == shipped_lanes else ""
        rounds_note = (
            f": the mean of {len(run['rounds'])} rounds of {seconds:.0f} s, each "
            f"{min(round_ratios):.3f}-{max(round_ratios):.3f}× the floor's runs either side"
            if run is main_run and len(run["rounds"]) > 1
            else ""
        )
        rows.append(
            [
                f"fjordgate gateway serve, {lanes} committer lane(s){shipped}, {count} "
                f"clients{rounds_note}",
                f"{run['rate']:,.0f}",
                f"{run['rate'] / raw_rate:.3f}×",
                f"{run['gateway_cpu'] * 1e6:.1f}",
                f"{run['broker_cpu'] * 1e6:.1f}",
                f"{run['client_cpu'] * 1e6:.1f}",
                f"{run['per_group']:,.0f}",
            ]
        )
    throughput = (
        _table(
            f"End to end: HTTP batch → audit fsync → Kafka transaction ack ({BATCH}-event "
            f"batches, {seconds:.0f} s each, warm broker; goal ≥ 0.5× raw; {clients[0]} "
            "clients keep the gateway busy (64 took less: their own CPU), fewer leave it "
            "waiting on commits; the load "
            "generator's HTTP clients share the machine's two cores, the raw producer has "
            "none)",
            [
                "what",
                "events/s",
                "× raw producer",
                "gateway CPU µs/event",
                "broker CPU µs/event",
                "load generator CPU µs/event",
                "events per transaction",
            ],
            rows,
        )
        + "\nHTTP answers: "
        + "; ".join(
            f"{lanes} lane(s), {count} clients: {run['answers']}"
            for (lanes, count), run in runs.items()
        )
        + "\n"
    )
    groups_table = _table(
        "Where a group's commit goes (the gateway's histograms, mean ms per group): the "
        "audit append (encode, hash, write, fsync, and waiting for another lane's), then "
        "the Kafka transaction (produce, commit)",
        ["run", "events per group", "commit ms", "audit append ms", "Kafka transaction ms"],
        [
            [
                f"{lanes} lane(s), {count} clients",
                f"{run['per_group']:,.0f}",
                f"{run['group_ms']['commit']:.1f}",
                f"{run['group_ms']['audit_fsync']:.1f}",
                f"{run['group_ms']['publish']:.1f}",
            ]
            for (lanes, count), run in runs.items()
        ],
    )
    latency = _table(
        f"Latency at a fixed rate of {rate:,} events/s (100-event batches), request to "
        f"response, {shipped_lanes} lanes",
        ["p50 ms", "p99 ms", "requests"],
        [[f"{p50 * 1000:.1f}", f"{p99 * 1000:.1f}", str(len(latencies))]],
    )
    return throughput + "\n" + warmed + "\n" + groups_table + "\n" + latency


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about a minute)")
    parser.add_argument("--skip-kafka", action="store_true", help="no Kafka section")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else 10.0
    sections = [
        "# Gateway benchmarks\n",
        f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        "shared, noisy machine: read the ratios, measured side by side in one run.\n",
        bench_pipeline(5_000 if args.quick else 20_000, 3),
    ]
    print(sections[-1], flush=True)
    # Enough bodies that no run ends early for want of them at today's rates (the end to end
    # section's second configuration ran out after 3.6 s with 400,000 events).
    sections.append(bench_servers(seconds, 300_000))
    print(sections[-1], flush=True)
    if not args.skip_kafka:
        # 16 clients: at 4 the rate followed the commit latency (40,000-42,000 events/s
        # against 51,000-52,000 with 16 on one broker, transactions of 640 against 2,000
        # events); 32 and 64 took no more. 4 stays as a row, as earlier reports ran it.
        sections.append(
            bench_kafka(
                seconds, 4_000_000, rate=2_000, clients=(32, 16, 4), rounds=2 if args.quick else 3
            )
        )
        print(sections[-1], flush=True)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(sections))
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
