"""Scale-out: several processor processes in one Kafka consumer group.

Each process owns some partitions and keeps their state in local RocksDB;
every state change also goes to the store's compacted changelog topic, inside
one Kafka transaction per commit interval that also commits the source
offsets (`send_offsets_to_transaction` with the group's metadata, so a process
that lost its partitions is fenced). A partition assigned to a process is
rebuilt from its changelog, and consumption resumes at the group's committed
offset: the state and the position it reflects come from the same transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import time

import structlog
from confluent_kafka import KafkaException, Producer, TopicPartition

from processor.config import ProcessorConfig
from processor.errors import JobDefinitionError, ProcessorError
from processor.guard import StartGuard
from processor.job import Job
from processor.runner import JobRunner, streaming_gc
from processor.sources.kafka import KafkaSource
from processor.state.changelog import ChangeloggedPartitionState
from processor.state.recovery import ensure_changelog_topic, restore_from_changelog
from processor.watermarks import MIN_WATERMARK

log = structlog.get_logger(__name__)


def changelog_topic(job: str, column: str) -> str:
    return f"fjordgate-{job}-{column}-changelog"


class GroupJobRunner(JobRunner):
    """One member of a consumer group running a job over the partitions it is given."""

    def __init__(
        self, job: Job, config: ProcessorConfig | None = None, *, guard: StartGuard | None = None
    ) -> None:
        super().__init__(job, config, guard=guard)
        if not isinstance(self.source, KafkaSource) or job.consumer_group is None:
            raise JobDefinitionError(
                f"job {job.name}: scale-out needs a Kafka source with a consumer group"
            )
        self.kafka: KafkaSource = self.source
        self.changelog = changelog_topic(job.name, self.operator.column)
        instance = (
            self.config.instance_id
            or hashlib.sha256(
                f"{socket.gethostname()}:{self.config.localdir.resolve()}".encode()
            ).hexdigest()[:12]
        )
        # A stable id per instance: a restarted instance fences its dead
        # predecessor's open transaction at once instead of waiting for a timeout.
        self.transactional_id = f"fjordgate-{job.name}-{instance}"
        self.producer: Producer | None = None
        self._in_transaction = False

    def start(self) -> None:
        name = self.job.name
        self.guard.check_state_dir(self.config.localdir, job=name)
        self.guard.check_destination(self.sink.destination(), job=name, role="sink")
        if self.side_output is not None:
            self.guard.check_destination(
                self.side_output.destination(), job=name, role="side-output"
            )
        partitions = self.kafka.partitions()
        ensure_changelog_topic(self.kafka.bootstrap_servers, self.changelog, len(partitions))
        self.producer = Producer(
            {
                "bootstrap.servers": self.kafka.bootstrap_servers,
                "transactional.id": self.transactional_id,
                "transaction.timeout.ms": 30_000,
                "linger.ms": 20,
            }
        )
        self.producer.init_transactions(60)
        self._begin()
        self.sink.bind_source(self.kafka.topic)
        self.sink.open(name, self.job.result_columns())
        if self.side_output is not None:
            self.side_output.open(name)
        self.kafka.subscribe(self._on_rebalance)
        self._started = True
        log.info("group_member_started", job=name, group=self.job.consumer_group,
                 transactional_id=self.transactional_id)  # fmt: skip

    def _begin(self) -> None:
        assert self.producer is not None
        self.producer.begin_transaction()
        self._in_transaction = True

    def _on_rebalance(self, assigned: list[int], revoked: list[int]) -> None:
        if revoked:
            try:
                self.checkpoint()
            except ProcessorError as exc:
                # Partitions lost (fenced, session expired): their uncommitted work is
                # discarded; the new owner restarts from the last committed transaction.
                log.warning("revoke_commit_failed", job=self.job.name, error=str(exc))
                assert self.producer is not None
                with contextlib.suppress(KafkaException):
                    self.producer.abort_transaction(10)
                self._begin()
            for p in revoked:
                self.operator.drop(p)
                self.tracker.revoke([p])
                self.backend.close_partition(p)
                self.states.pop(p, None)
                self.positions.pop(p, None)
            log.info("partitions_revoked", job=self.job.name, partitions=revoked)
        for p in assigned:
            began = time.monotonic()
            # Local files may hold changes of an aborted transaction: the changelog is the truth.
            self.backend.drop_partition(p)
            inner = self.backend.open_partition(p, [self.operator.column])
            records = restore_from_changelog(self.kafka.bootstrap_servers, self.changelog, p, inner)
            assert self.producer is not None
            state = ChangeloggedPartitionState(inner, self.producer, self.changelog, p)
            self.states[p] = state
            self.operator.restore(p, state)
            pmax = inner.get_meta("pmax")
            self.tracker.assign([p])
            self.tracker.restore(MIN_WATERMARK, {p: int(pmax)} if pmax is not None else {})
            log.info("partition_restored", job=self.job.name, partition=p, records=records,
                     seconds=round(time.monotonic() - began, 3))  # fmt: skip
        if assigned:
            self.tracker.rebase()
            self.guard.record({"type": "recovery", "job": self.job.name,
                               "partitions": assigned, "from": "changelog"})  # fmt: skip

    def checkpoint(self) -> None:  # type: ignore[override]
        """Flush state to the changelog and commit it with the source offsets, atomically."""
        producer = self.producer
        assert producer is not None
        began = time.monotonic()
        for p, state in self.states.items():
            batch = state.new_batch()
            self.operator.flush(p, state, batch)
            batch.put_meta("pmax", str(self.tracker.partition_max(p)).encode())
            state.commit(batch)
        offsets = [TopicPartition(self.kafka.topic, p, o) for p, o in self.positions.items()]
        consumer = self.kafka._client()
        try:
            if offsets:
                producer.send_offsets_to_transaction(
                    offsets, consumer.consumer_group_metadata(), 60
                )
            producer.commit_transaction(60)
        except KafkaException as exc:
            err = exc.args[0]
            if err.txn_requires_abort():
                producer.abort_transaction(60)
            raise ProcessorError(
                f"job {self.job.name}: could not commit state and offsets: {err.str()}; "
                "this member restarts from the last committed transaction"
            ) from exc
        self._begin()
        self.metrics.checkpoints += 1
        self.metrics.last_checkpoint_seconds = time.monotonic() - began
        self._last_checkpoint = time.monotonic()

    def step(self, *, stop_at_end: bool = False) -> bool:
        if stop_at_end:
            raise JobDefinitionError("a consumer-group member runs until stopped (no --until-end)")
        return super().step()

    def close(self) -> None:
        # Closing the consumer revokes its partitions, which commits their state first.
        super().close()
        if self.producer is not None and self._in_transaction:
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(10)
            self._in_transaction = False

    def run(self, *, stop_at_end: bool = False, stop=None):  # type: ignore[no-untyped-def]
        streaming_gc()
        if not self._started:
            self.start()
        try:
            while stop is None or not stop.is_set():
                self.step()
            self.checkpoint()
        finally:
            self.close()
        return self.metrics
