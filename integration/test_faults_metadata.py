"""Metadata-store faults: a SQLite database locked by a concurrent writer, a PostgreSQL server
restarted under a running reader.

Both are transient: the store retries with backoff inside its budget and the caller sees the
exact answer, never an error and never a partial result. Past the budget the failure is a
:class:`~streamhouse_beam.errors.MetadataUnavailableError` naming the database.
"""

from __future__ import annotations

import pathlib
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from streamhouse_beam.errors import MetadataUnavailableError
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.metadata.base import MetadataStore
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse

TOPIC = "orders"


def _retries(store: MetadataStore) -> int:
    """Transient failures the store has retried so far."""
    return int(store.retry_count)  # type: ignore[attr-defined]


@pytest.fixture
def sqlite_house(tmp_path: pathlib.Path) -> Iterator[LocalStreamHouse]:
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db",
        MemoryStore(f"meta-faults-{tmp_path.name}"),
        segment_max_records=10,
    ) as house:
        house.create_schema()
        house.create_topic(TOPIC, partitions=2)
        house.append(TOPIC, 0, [f"v{i}" for i in range(25)], flush=True)
        yield house


class _LockHolder:
    """Another process's writer: holds an EXCLUSIVE lock on the database until released."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._conn.execute("BEGIN EXCLUSIVE")
        self.released = threading.Event()

    def release_after(self, seconds: float) -> threading.Timer:
        timer = threading.Timer(seconds, self.release)
        timer.start()
        return timer

    def release(self) -> None:
        if not self.released.is_set():
            self._conn.execute("COMMIT")
            self._conn.close()
            self.released.set()


def _db_path(house: LocalStreamHouse) -> str:
    store = house.metadata()
    path: str = store.path  # type: ignore[attr-defined]
    store.close()
    return path


def test_sqlite_locked_by_a_writer_fails_one_attempt(sqlite_house: LocalStreamHouse) -> None:
    holder = _LockHolder(_db_path(sqlite_house))
    try:
        store = sqlite_house.metadata(busy_timeout=0.05, retry_attempts=1)
        with pytest.raises(MetadataUnavailableError, match=r"metadata\.db"):
            store.partitions(TOPIC)
        store.close()
    finally:
        holder.release()


def test_sqlite_read_while_locked_is_retried_to_the_exact_answer(
    sqlite_house: LocalStreamHouse,
) -> None:
    expected = [
        (p.partition, p.earliest_offset, p.high_watermark)
        for p in sqlite_house.metadata().partitions(TOPIC)
    ]
    store = sqlite_house.metadata(busy_timeout=0.05, retry_attempts=50, retry_max_delay=0.1)
    holder = _LockHolder(_db_path(sqlite_house))
    timer = holder.release_after(0.6)
    try:
        got = [(p.partition, p.earliest_offset, p.high_watermark) for p in store.partitions(TOPIC)]
        segments = store.segments(TOPIC, 0)
    finally:
        timer.join()
        holder.release()
    assert got == expected
    assert [(s.base_offset, s.end_offset) for s in segments] == [(0, 9), (10, 19), (20, 24)]
    assert _retries(store) >= 1
    store.close()


def test_sqlite_commit_while_another_writer_holds_the_lock_is_retried(
    sqlite_house: LocalStreamHouse,
) -> None:
    store = sqlite_house.metadata(busy_timeout=0.05, retry_attempts=50, retry_max_delay=0.1)
    holder = _LockHolder(_db_path(sqlite_house))
    timer = holder.release_after(0.6)
    try:
        store.commit_offsets("g'; DROP TABLE segments; --", {TopicPartition(TOPIC, 0): 17})
    finally:
        timer.join()
        holder.release()
    assert _retries(store) >= 1
    assert store.committed_offset("g'; DROP TABLE segments; --", TOPIC, 0) == 17
    assert len(store.segments(TOPIC, 0)) == 3
    store.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL restarted under a reader
# --------------------------------------------------------------------------------------------


@pytest.fixture
def pg_house(postgres_server: Any, postgres_url: str) -> Iterator[LocalStreamHouse]:
    with LocalStreamHouse(
        postgres_url, MemoryStore("meta-faults-pg"), segment_max_records=10
    ) as house:
        house.create_schema()
        house.create_topic(TOPIC, partitions=1)
        house.append(TOPIC, 0, [f"v{i}" for i in range(25)], flush=True)
        yield house


@pytest.mark.postgres
def test_postgres_restart_between_queries_reconnects_transparently(
    postgres_server: Any, pg_house: LocalStreamHouse
) -> None:
    store = open_metadata(
        pg_house.metadata_url, pg_house.organization_id, retry_attempts=30, retry_max_delay=0.5
    )
    before = [(s.base_offset, s.end_offset) for s in store.segments(TOPIC, 0)]
    postgres_server.restart()
    after = [(s.base_offset, s.end_offset) for s in store.segments(TOPIC, 0)]
    assert after == before == [(0, 9), (10, 19), (20, 24)]
    # The pooled connection died with the server: at least one attempt failed and was retried.
    assert _retries(store) >= 1
    store.commit_offsets("group", {TopicPartition(TOPIC, 0): 25})
    assert store.committed_offset("group", TOPIC, 0) == 25
    store.close()


@pytest.mark.postgres
def test_postgres_down_past_the_budget_is_a_named_error(
    postgres_server: Any, pg_house: LocalStreamHouse
) -> None:
    store = open_metadata(
        pg_house.metadata_url,
        pg_house.organization_id,
        retry_attempts=3,
        retry_base_delay=0.01,
        connect_timeout=1,
    )
    store.segments(TOPIC, 0)
    postgres_server.stop(cleanup=False)
    try:
        with pytest.raises(MetadataUnavailableError) as info:
            store.segments(TOPIC, 0)
        assert "3 attempt" in str(info.value)
    finally:
        postgres_server.start()
    assert len(store.segments(TOPIC, 0)) == 3
    store.close()


# --------------------------------------------------------------------------------------------
# PostgreSQL restarted in the middle of a streaming Beam read
# --------------------------------------------------------------------------------------------


class _FileSink:
    """Appends ``(partition, offset, value)`` of each record to a file, flushed per record."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, record: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{record.partition}\t{record.offset}\t{record.value.decode()}\n")


def _lines(path: pathlib.Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


@pytest.mark.postgres
@pytest.mark.slow
def test_streaming_read_survives_a_postgres_restart_with_exact_output(
    postgres_server: Any, postgres_url: str, tmp_path: pathlib.Path
) -> None:
    import time

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from streamhouse_beam.beam import ReadFromStreamHouse

    store_name = f"pg-restart-{tmp_path.name}"
    before, after = 40, 30
    with LocalStreamHouse(postgres_url, MemoryStore(store_name), segment_max_records=10) as house:
        house.create_schema()
        house.create_topic(TOPIC, partitions=2)
        for p in (0, 1):
            house.append(TOPIC, p, [f"p{p}-{i}" for i in range(before // 2)], flush=True)

        out = tmp_path / "out.tsv"
        pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
        _ = (
            pipeline
            | ReadFromStreamHouse(
                TOPIC,
                metadata_url=postgres_url,
                storage_url=f"memory://{store_name}",
                metadata_options={"retry_attempts": 40, "retry_max_delay": 0.5},
                max_records=before + after,
                max_poll_records=5,
                poll_interval=0.2,
                commit_offsets_group="through-restart",
            )
            | beam.Map(_FileSink(str(out)))
        )
        errors: list[BaseException] = []
        results: list[Any] = []

        def run() -> None:
            try:
                result = pipeline.run()
                result.wait_until_finish()
                results.append(result)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        runner = threading.Thread(target=run, daemon=True)
        runner.start()
        deadline = time.monotonic() + 120
        while len(_lines(out)) < before and time.monotonic() < deadline and runner.is_alive():
            time.sleep(0.05)
        assert len(_lines(out)) == before, errors
        # Caught up and polling: take the database away under it, then bring it back.
        postgres_server.restart(down_seconds=1.0)
        for p in (0, 1):
            house.append(
                TOPIC,
                p,
                [f"p{p}-{i}" for i in range(before // 2, (before + after) // 2)],
                flush=True,
            )
        runner.join(timeout=180)
        assert not runner.is_alive(), "the streaming read did not finish after the restart"
        assert errors == []
        from apache_beam.metrics.metric import MetricsFilter

        counters = {
            c.key.metric.name: c.committed
            for c in results[0]
            .metrics()
            .query(MetricsFilter().with_namespace("streamhouse"))["counters"]
        }
        # The pipeline really met the dead server: its metadata queries failed and were retried.
        assert counters.get("metadata_retries", 0) >= 1

    got = sorted(_lines(out))
    expected = sorted(f"{p}\t{i}\tp{p}-{i}" for p in (0, 1) for i in range((before + after) // 2))
    assert got == expected
