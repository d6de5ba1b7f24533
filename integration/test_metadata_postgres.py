"""PostgreSQL-specific metadata behaviour against a real server: RLS, passwords, restarts."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from streamhouse_beam.errors import (
    MetadataError,
    MetadataUnavailableError,
    NotAStreamHouseStoreError,
    OrganizationError,
    TopicNotFoundError,
)
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.metadata.postgres import PostgresMetadataStore
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse
from streamhouse_beam.testing.postgres import PostgresServer

pytestmark = pytest.mark.postgres


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield name
    postgres_server.drop_database(name)


def _two_orgs(server: PostgresServer, db: str) -> tuple[LocalStreamHouse, LocalStreamHouse]:
    a = LocalStreamHouse(server.url(db), MemoryStore("pg-rls-a"))
    a.create_schema()
    b = LocalStreamHouse(server.url(db), MemoryStore("pg-rls-b"))
    b.create_schema()
    a.create_topic("a-topic", 2)
    a.append("a-topic", 1, [b"x"] * 3, flush=True)
    b.create_topic("b-topic", 1)
    server.grant_reader(db)
    return a, b


def test_non_owner_role_reads_its_organization_through_row_level_security(
    postgres_server: PostgresServer, database: str
) -> None:
    a, b = _two_orgs(postgres_server, database)
    url = postgres_server.reader_url(database)
    # RLS is really on for this role: without the setting it sees no rows at all.
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM topics").fetchone() == (0,)
    meta = open_metadata(url, a.organization_id)
    assert [t.name for t in meta.list_topics()] == ["a-topic"]
    assert meta.list_organizations() == [a.organization_id]
    assert meta.partition("a-topic", 1).high_watermark == 3
    assert [s.base_offset for s in meta.segments("a-topic", 1)] == [0]
    with pytest.raises(TopicNotFoundError):
        meta.get_topic("b-topic")
    meta.commit_offsets("beam", {TopicPartition("a-topic", 1): 3})
    assert meta.committed_offset("beam", "a-topic", 1) == 3
    assert [t.name for t in open_metadata(url, b.organization_id).list_topics()] == ["b-topic"]


def test_non_owner_role_without_an_organization_is_told_why_it_sees_none(
    postgres_server: PostgresServer, database: str
) -> None:
    _two_orgs(postgres_server, database)
    with pytest.raises(OrganizationError, match="row-level security"):
        open_metadata(postgres_server.reader_url(database)).list_topics()


def test_owner_without_an_organization_sees_them_all_and_must_choose(
    postgres_server: PostgresServer, database: str
) -> None:
    a, b = _two_orgs(postgres_server, database)
    with pytest.raises(OrganizationError) as err:
        open_metadata(postgres_server.owner_url(database)).list_topics()
    assert a.organization_id in str(err.value) and b.organization_id in str(err.value)


def test_password_in_the_url_works_and_is_never_shown(
    postgres_server: PostgresServer, database: str
) -> None:
    a, _ = _two_orgs(postgres_server, database)
    url = postgres_server.owner_url(database)
    assert "%40" in url  # the password holds '@', ':' and '/', percent-encoded
    meta = open_metadata(url, a.organization_id)
    assert meta.get_topic("a-topic").partition_count == 2
    for text in (meta.url, repr(meta)):
        assert "s3cret" not in text and "***" in text
    with pytest.raises(TopicNotFoundError) as err:
        meta.get_topic("missing")
    assert "s3cret" not in str(err.value) and "***" in str(err.value)


def test_wrong_password_fails_at_once_without_echoing_it(
    postgres_server: PostgresServer, database: str
) -> None:
    url = postgres_server.url(database, PostgresServer.PASSWORD_USER, "not-the-password-42")
    meta = open_metadata(url, retry_attempts=5)
    with pytest.raises(MetadataUnavailableError, match="password authentication failed") as err:
        meta.list_topics()
    assert "not-the-password-42" not in str(err.value)
    assert isinstance(meta, PostgresMetadataStore) and meta.retry_count == 0


def test_organization_ids_must_be_uuids(postgres_server: PostgresServer, database: str) -> None:
    with pytest.raises(OrganizationError, match="not a UUID"):
        open_metadata(postgres_server.url(database), "o'; DROP TABLE topics; --")


def test_upper_case_uuid_is_accepted_in_canonical_form(
    postgres_server: PostgresServer, database: str
) -> None:
    a, _ = _two_orgs(postgres_server, database)
    meta = open_metadata(postgres_server.url(database), a.organization_id.upper())
    assert meta.organization_id == a.organization_id
    assert [t.name for t in meta.list_topics()] == ["a-topic"]


def test_the_uuid_psycopg_returns_is_an_organization_id_everywhere(
    postgres_server: PostgresServer, database: str
) -> None:
    a, _ = _two_orgs(postgres_server, database)
    with psycopg.connect(postgres_server.url(database)) as conn:
        row = conn.execute("SELECT id FROM organizations WHERE id = %s", (a.organization_id,))
        org = row.fetchone()[0]  # type: ignore[index]
    assert isinstance(org, uuid.UUID)
    house = LocalStreamHouse(postgres_server.url(database), a.store, organization_id=org)
    house.create_organization(org)
    house.append("a-topic", 0, [b"y"], flush=True)
    assert house.organization_id == a.organization_id
    meta = open_metadata(postgres_server.url(database), org)
    assert meta.organization_id == a.organization_id
    assert meta.partition("a-topic", 0).high_watermark == 1


def test_commits_of_two_organizations_stay_apart(
    postgres_server: PostgresServer, database: str
) -> None:
    a = LocalStreamHouse(postgres_server.url(database), MemoryStore("pg-commit"))
    a.create_schema()
    b = LocalStreamHouse(postgres_server.url(database), MemoryStore("pg-commit"))
    b.create_schema()
    a.create_topic("t", 1)
    b.create_topic("t", 1)
    a.commit("g", {("t", 0): 5})
    b.commit("g", {("t", 0): 9})
    assert a.metadata().committed_offset("g", "t", 0) == 5
    assert b.metadata().committed_offset("g", "t", 0) == 9


def test_empty_database_is_not_a_streamhouse_store(
    postgres_server: PostgresServer, database: str
) -> None:
    postgres_server.execute("CREATE TABLE topics (name text)", dbname=database)
    with pytest.raises(NotAStreamHouseStoreError, match="table 'organizations' is missing"):
        open_metadata(postgres_server.url(database)).list_topics()


def test_role_without_grants_gets_a_permission_error(
    postgres_server: PostgresServer, database: str
) -> None:
    a = LocalStreamHouse(postgres_server.url(database), MemoryStore("pg-nogrant"))
    a.create_schema()
    meta = open_metadata(postgres_server.reader_url(database), a.organization_id)
    with pytest.raises(MetadataError, match="permission denied"):
        meta.list_topics()


def test_one_connection_is_reused_across_calls(
    postgres_server: PostgresServer, database: str
) -> None:
    a, _ = _two_orgs(postgres_server, database)
    meta = open_metadata(postgres_server.url(database), a.organization_id)
    assert isinstance(meta, PostgresMetadataStore)
    first = meta._read("pid", "SELECT pg_backend_pid()", ())
    meta.partitions("a-topic")
    assert meta._read("pid", "SELECT pg_backend_pid()", ()) == first


@pytest.fixture
def private_server() -> Iterator[PostgresServer]:
    # Restart tests get their own server so they cannot disturb the session one.
    with PostgresServer() as server:
        yield server


def test_reads_and_commits_survive_a_server_restart(private_server: PostgresServer) -> None:
    db = private_server.create_database()
    lsh = LocalStreamHouse(private_server.url(db), MemoryStore("pg-restart"))
    lsh.create_schema()
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"x"] * 4, flush=True)
    meta = open_metadata(private_server.url(db), lsh.organization_id, retry_base_delay=0.1)
    assert isinstance(meta, PostgresMetadataStore)
    assert meta.partition("t", 0).high_watermark == 4
    private_server.restart(down_seconds=0.5)  # the open connection is terminated
    assert meta.partition("t", 0).high_watermark == 4
    meta.commit_offsets("g", {TopicPartition("t", 0): 4})
    assert meta.committed_offset("g", "t", 0) == 4
    assert meta.retry_count >= 1


def test_server_down_past_the_budget_raises_metadata_unavailable(
    private_server: PostgresServer,
) -> None:
    db = private_server.create_database()
    lsh = LocalStreamHouse(private_server.url(db), MemoryStore("pg-down"))
    lsh.create_schema()
    meta = open_metadata(
        private_server.url(db), lsh.organization_id, retry_attempts=3, retry_base_delay=0.05
    )
    assert meta.list_topics() == []
    private_server.stop(cleanup=False)
    try:
        with pytest.raises(MetadataUnavailableError, match=r"3 attempt\(s\)"):
            meta.list_topics()
    finally:
        private_server.start()
    assert meta.list_topics() == []


def test_segments_unique_index_is_global_as_in_streamhouse(
    postgres_server: PostgresServer, database: str
) -> None:
    """PostgreSQL's UNIQUE (topic, partition_id, base_offset) is not org-scoped, as in StreamHouse's migrations."""
    a = LocalStreamHouse(postgres_server.url(database), MemoryStore("pg-uniq"))
    a.create_schema()
    b = LocalStreamHouse(postgres_server.url(database), MemoryStore("pg-uniq"))
    b.create_schema()
    a.create_topic("same", 1)
    b.create_topic("same", 1)
    a.append("same", 0, [b"a"], flush=True)
    with pytest.raises(MetadataError):
        b.write_segment("same", 0, [(0, 1, None, b"b")], segment_id=f"same-0-0-{uuid.uuid4()}")
    assert b.metadata().partition("same", 0).high_watermark == 0


def test_a_killed_connection_is_replaced_and_the_call_retried(
    postgres_server: PostgresServer, database: str
) -> None:
    a, _ = _two_orgs(postgres_server, database)
    meta = open_metadata(postgres_server.url(database), a.organization_id)
    assert isinstance(meta, PostgresMetadataStore)
    ((pid,),) = meta._read("pid", "SELECT pg_backend_pid()", ())
    postgres_server.execute("SELECT pg_terminate_backend(%s)", (pid,))
    meta.commit_offsets("g", {TopicPartition("a-topic", 0): 1})
    ((new_pid,),) = meta._read("pid", "SELECT pg_backend_pid()", ())
    assert new_pid != pid and meta.retry_count >= 1
    postgres_server.execute("SELECT pg_terminate_backend(%s)", (new_pid,))
    assert meta.committed_offset("g", "a-topic", 0) == 1
    assert meta.retry_count >= 2


def test_a_statement_stuck_behind_a_lock_times_out_named_and_the_store_recovers(
    postgres_server: PostgresServer, database: str
) -> None:
    a, _ = _two_orgs(postgres_server, database)
    meta = open_metadata(
        postgres_server.url(database),
        a.organization_id,
        statement_timeout=0.2,
        retry_attempts=2,
        retry_base_delay=0.05,
    )
    assert len(meta.partitions("a-topic")) == 2
    with psycopg.connect(postgres_server.url(database)) as locker:
        # Another session holds the table: without a statement timeout the read would wait
        # for as long as the lock is held.
        locker.execute("LOCK TABLE partitions IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(MetadataUnavailableError, match="statement timeout") as caught:
            meta.partitions("a-topic")
        assert "2 attempt(s)" in str(caught.value)
        locker.rollback()
    assert len(meta.partitions("a-topic")) == 2
    assert meta.retry_count >= 1


def test_statement_timeout_is_validated_and_can_be_left_to_the_server(
    postgres_server: PostgresServer, database: str
) -> None:
    url = postgres_server.url(database)
    for bad in (0, -1, True, "5"):
        with pytest.raises(ValueError, match="statement_timeout"):
            open_metadata(url, statement_timeout=bad)
    a, _ = _two_orgs(postgres_server, database)
    server_default = open_metadata(url, a.organization_id, statement_timeout=None)
    assert server_default._read("timeout", "SHOW statement_timeout", ()) == [("0",)]
    ours = open_metadata(url, a.organization_id, statement_timeout=1.5)
    assert ours._read("timeout", "SHOW statement_timeout", ()) == [("1500ms",)]
