"""SQLite-specific metadata behaviour: locking, read-only reads, schema checks, quirks."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamhouse_beam.errors import (
    MetadataUnavailableError,
    NotAStreamHouseStoreError,
)
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.metadata.sqlite import SqliteMetadataStore, sqlite_path_from_url
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse


def _lsh(tmp_path: Path, org: str | None = None, **kw: object) -> LocalStreamHouse:
    lsh = LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db",
        MemoryStore(f"sqlite-{tmp_path.name}"),
        organization_id=org,
        **kw,  # type: ignore[arg-type]
    )
    lsh.create_schema()
    return lsh


class _Locker:
    """Holds an EXCLUSIVE lock on the database until ``release()`` (or the store retried twice)."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()

    def release_after_retries(self, store: SqliteMetadataStore, retries: int) -> threading.Thread:
        def run() -> None:
            deadline = time.monotonic() + 30
            while store.retry_count < retries and time.monotonic() < deadline:
                time.sleep(0.01)
            self.release()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        return thread


def _fast_store(lsh: LocalStreamHouse, **options: object) -> SqliteMetadataStore:
    options.setdefault("busy_timeout", 0.01)
    options.setdefault("retry_base_delay", 0.02)
    options.setdefault("retry_max_delay", 0.05)
    store = lsh.metadata(**options)
    assert isinstance(store, SqliteMetadataStore)
    return store


def test_url_forms_are_read_as_sqlalchemy_reads_them() -> None:
    assert sqlite_path_from_url("sqlite:///data/metadata.db") == "data/metadata.db"
    assert sqlite_path_from_url("sqlite:////data/metadata.db") == "/data/metadata.db"
    assert sqlite_path_from_url("sqlite://localhost/data/metadata.db") == "/data/metadata.db"
    assert sqlite_path_from_url("sqlite:relative.db") == "relative.db"
    with pytest.raises(ValueError, match="host part"):
        sqlite_path_from_url("sqlite://host/x.db")
    with pytest.raises(ValueError, match="names no database"):
        sqlite_path_from_url("sqlite:///")
    with pytest.raises(ValueError, match="query"):
        sqlite_path_from_url("sqlite:///x.db?mode=rw")
    with pytest.raises(ValueError, match="scheme 'mysql'"):
        open_metadata("mysql://u:pw@h/db")
    with pytest.raises(ValueError, match="busy_timeout"):
        open_metadata("postgresql://h/db", busy_timeout=1)


def test_commit_waits_out_a_concurrent_writer_then_succeeds(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    lsh.create_topic("orders", 1)
    store = _fast_store(lsh)
    assert store.organization_id == lsh.organization_id
    locker = _Locker(store.path)
    thread = locker.release_after_retries(store, 2)
    store.commit_offsets("g", {TopicPartition("orders", 0): 11})
    thread.join()
    assert store.retry_count >= 2
    assert store.committed_offset("g", "orders", 0) == 11


def test_reads_are_retried_while_a_writer_holds_an_exclusive_lock(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 3, flush=True)
    store = _fast_store(lsh)
    store.list_topics()  # resolve the organization before locking
    locker = _Locker(store.path)
    thread = locker.release_after_retries(store, 2)
    assert store.partition("orders", 0).high_watermark == 3
    thread.join()
    assert store.retry_count >= 2


def test_lock_held_past_the_budget_raises_metadata_unavailable(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    lsh.create_topic("orders", 1)
    store = _fast_store(lsh, retry_attempts=3)
    store.list_topics()
    locker = _Locker(store.path)
    try:
        with pytest.raises(MetadataUnavailableError, match=r"3 attempt\(s\).*locked"):
            store.commit_offsets("g", {TopicPartition("orders", 0): 1})
    finally:
        locker.release()
    assert store.committed_offset("g", "orders", 0) is None


def test_reads_use_a_read_only_connection(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    store = _fast_store(lsh)
    store.list_topics()
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        store._reader().execute("DELETE FROM topics")


def _die_inside_a_write_transaction(path: str) -> None:
    """A process that commits offsets and is killed before its transaction ends.

    A tiny page cache makes SQLite write changed pages to the database file during the
    transaction, so the rollback journal it leaves behind is hot.
    """
    program = (
        "import os, sqlite3, sys\n"
        "conn = sqlite3.connect(f'file:{sys.argv[1]}?mode=rw', uri=True, isolation_level=None)\n"
        "conn.execute('PRAGMA cache_size = 5')\n"
        "conn.execute('BEGIN IMMEDIATE')\n"
        "conn.execute('UPDATE consumer_offsets SET committed_offset = 999')\n"
        "conn.execute('CREATE TABLE scratch (b BLOB)')\n"
        "for _ in range(2000):\n"
        "    conn.execute('INSERT INTO scratch VALUES (?)', (os.urandom(512),))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", program, path], check=True, timeout=60)


def test_a_writer_killed_inside_a_transaction_leaves_the_store_readable(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    lsh.create_topic("orders", 1)
    lsh.metadata().commit_offsets("g", {TopicPartition("orders", 0): 2})
    store = _fast_store(lsh)
    _die_inside_a_write_transaction(store.path)
    assert Path(store.path + "-journal").stat().st_size > 0
    # A read-only connection alone cannot read past the hot journal (SQLite refuses).
    conn = sqlite3.connect(f"file:{store.path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("SELECT name FROM sqlite_master").fetchall()
    conn.close()
    # The store rolls the dead writer's transaction back and reads what was committed.
    assert store.committed_offset("g", "orders", 0) == 2
    assert [t.name for t in store.list_topics()] == ["orders"]
    assert (
        not store._reader().execute("SELECT 1 FROM sqlite_master WHERE name = 'scratch'").fetchall()
    )


def test_a_hot_journal_that_cannot_be_rolled_back_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lsh = _lsh(tmp_path)
    lsh.create_topic("orders", 1)
    store = _fast_store(lsh)
    _die_inside_a_write_transaction(store.path)
    real = store._file_uri

    def no_write_access(mode: str) -> str:
        # What a reader without write permission on the file meets (root ignores modes).
        return real(mode) if mode == "ro" else f"file:{tmp_path}/no/such/dir/x.db?mode=rw"

    monkeypatch.setattr(store, "_file_uri", no_write_access)
    with pytest.raises(MetadataUnavailableError, match=r"hot journal .*metadata\.db-journal"):
        store.list_topics()


def test_missing_database_file_is_reported_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(MetadataUnavailableError, match="does not exist"):
        open_metadata(f"sqlite:///{path}").list_topics()
    assert not path.exists()


def test_empty_database_is_not_a_streamhouse_store(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.close()
    with pytest.raises(NotAStreamHouseStoreError, match="table 'organizations' is missing") as err:
        open_metadata(f"sqlite:///{path}").list_topics()
    assert "customers" in str(err.value)


def test_file_that_is_not_sqlite_is_not_a_streamhouse_store(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NotAStreamHouseStoreError, match="not a SQLite database"):
        open_metadata(f"sqlite:///{path}").list_topics()


def test_missing_segment_column_is_named(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    conn = sqlite3.connect(f"{tmp_path}/metadata.db")
    conn.execute("DROP INDEX idx_segments_s3")
    conn.execute("ALTER TABLE segments DROP COLUMN s3_key")
    conn.commit()
    conn.close()
    with pytest.raises(NotAStreamHouseStoreError, match=r"'segments' lacks column.*s3_key"):
        lsh.metadata().list_topics()


def test_store_from_before_the_timestamp_migration_reads_zero_timestamps(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path)
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 4, flush=True)
    conn = sqlite3.connect(f"{tmp_path}/metadata.db")
    conn.execute("DROP INDEX idx_segments_org_location")
    conn.execute("DROP INDEX idx_segments_org_offsets")
    conn.execute("ALTER TABLE segments DROP COLUMN min_timestamp")
    conn.execute("ALTER TABLE segments DROP COLUMN max_timestamp")
    conn.commit()
    conn.close()
    meta = lsh.metadata()
    (seg,) = meta.segments("orders", 0)
    assert (seg.min_timestamp, seg.max_timestamp, seg.end_offset) == (0, 0, 3)
    assert [s.base_offset for s in meta.segments_for_timestamp("orders", 0, 10**15)] == [0]


@pytest.mark.parametrize(
    "org",
    ["o'; DROP TABLE organizations; --", "100%_org", 'quote"org', "組織-ü", "x?y"],
)
def test_organization_ids_with_sql_metacharacters_are_plain_data(tmp_path: Path, org: str) -> None:
    lsh = _lsh(tmp_path, org)
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"x"] * 2, flush=True)
    meta = open_metadata(lsh.metadata_url)  # the only organization
    assert meta.organization_id == org
    assert meta.partition("orders", 0).high_watermark == 2
    assert meta.segments("orders", 0)[0].key.startswith(f"org-{org}/data/orders/0/")
    meta.commit_offsets("g'--", {TopicPartition("orders", 0): 2})
    assert meta.committed_offset("g'--", "orders", 0) == 2


def test_commit_from_another_organization_overwrites_the_row_as_streamhouse_does(
    tmp_path: Path,
) -> None:
    """SQLite's UNIQUE(group_id, topic, partition_id) is StreamHouse's upsert target, not org-scoped.

    Org B committing the same group/topic/partition overwrites org A's row, which keeps A's
    organization_id: A then reads B's offset and B reads nothing. Reproduced on purpose.
    """
    a = _lsh(tmp_path, "org-a")
    b = _lsh(tmp_path, "org-b")
    a.create_topic("t", 1)
    b.create_topic("t", 1)
    a.commit("g", {("t", 0): 5})
    b.commit("g", {("t", 0): 9})
    assert a.metadata().committed_offset("g", "t", 0) == 9
    assert b.metadata().committed_offset("g", "t", 0) is None


def test_limited_reads_agree_with_full_reads_across_overlapping_rows(tmp_path: Path) -> None:
    lsh = _lsh(tmp_path, segment_max_records=3)
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"x"] * 300, flush=True)  # 100 rows of 3
    # Newer rows of various widths over the old ones, some sharing a base offset.
    for i, (base, end) in enumerate([(4, 40), (90, 92), (150, 260), (150, 151), (299, 299)]):
        lsh.write_segment(
            "t",
            0,
            [(o, 0, None, b"n") for o in range(base, end + 1)],
            key=f"data/t/0/new-{i}.seg",
            segment_id=f"t-0-{base}-new{i}",
            set_high_watermark=False,
        )
    meta = lsh.metadata()
    for start in (0, 3, 4, 41, 100, 149, 150, 152, 261, 299):
        full = meta.segments("t", 0, start)
        for limit in (1, 2, 5, 40):
            assert meta.segments("t", 0, start, limit=limit) == full[:limit], (start, limit)


def test_a_relative_sqlalchemy_url_opens_the_file_under_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "demo-data").mkdir()
    lsh = _lsh(tmp_path / "demo-data")
    lsh.create_topic("clicks", 2)
    monkeypatch.chdir(tmp_path)
    meta = open_metadata("sqlite:///demo-data/metadata.db")
    assert [t.name for t in meta.list_topics()] == ["clicks"]
    assert meta.path == str(tmp_path / "demo-data" / "metadata.db")  # type: ignore[attr-defined]


def test_three_slashes_before_an_absolute_path_is_told_the_right_spelling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _lsh(tmp_path)
    monkeypatch.chdir("/")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    written = f"sqlite://{tmp_path}/metadata.db"  # sqlite:// + /tmp/...: three slashes
    assert written.startswith("sqlite:///") and not written.startswith("sqlite:////")
    with pytest.raises(MetadataUnavailableError) as info:
        open_metadata(written).list_topics()
    assert f"write sqlite:///{tmp_path}/metadata.db" in str(info.value)


def test_the_transform_resolves_a_relative_url_where_it_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from streamhouse_beam import ReadFromStreamHouse, StopPosition
    from tests.read_helpers import read_all

    (tmp_path / "demo-data").mkdir()
    lsh = LocalStreamHouse(
        f"sqlite:///{tmp_path}/demo-data/metadata.db", f"file://{tmp_path}/demo-data/segments"
    )
    lsh.create_schema()
    lsh.create_topic("clicks", 1)
    lsh.append("clicks", 0, [b"a", b"b"], flush=True)
    monkeypatch.chdir(tmp_path)
    read = ReadFromStreamHouse(
        "clicks",
        metadata_url="sqlite:///demo-data/metadata.db",
        storage_url=f"file://{tmp_path}/demo-data/segments",
        stop=StopPosition.latest(),
    )
    assert read.config.metadata_url == f"sqlite:///{tmp_path}/demo-data/metadata.db"
    monkeypatch.chdir("/")  # workers may run anywhere
    assert sorted(r.value for r in read_all(read)) == [b"a", b"b"]
