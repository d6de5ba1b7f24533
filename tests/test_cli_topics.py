"""``streamhouse-beam topics``: the JSON document and the table, over a LocalStreamHouse store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamhouse_beam import cli
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse


@pytest.fixture(autouse=True)
def only_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    # Run the real dispatcher with just this subcommand, independent of the others.
    monkeypatch.setattr(cli, "_SUBCOMMANDS", ("topics",))


@pytest.fixture
def store_url(tmp_path: Path) -> tuple[str, LocalStreamHouse]:
    url = f"sqlite:///{tmp_path}/metadata.db"
    lsh = LocalStreamHouse(url, MemoryStore(f"cli-{tmp_path.name}"), segment_max_records=4)
    lsh.create_schema()
    lsh.create_topic("orders", 2)
    lsh.create_topic("événements", 1)
    lsh.append("orders", 0, [b"x"] * 10, flush=True)
    lsh.delete_segment_row("orders-0-0")  # earliest offset becomes 4
    return url, lsh


def test_json_document_has_the_documented_shape(
    store_url: tuple[str, LocalStreamHouse], capsys: pytest.CaptureFixture[str]
) -> None:
    url, lsh = store_url
    assert cli.main(["topics", "--metadata-url", url, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    sizes = [s.size_bytes for s in lsh.segments("orders", 0)]
    assert doc == {
        "organization": lsh.organization_id,
        "topics": [
            {
                "name": "orders",
                "partitions": [
                    {
                        "partition": 0,
                        "earliest_offset": 4,
                        "high_watermark": 10,
                        "segments": 2,
                        "bytes": sum(sizes),
                    },
                    {
                        "partition": 1,
                        "earliest_offset": 0,
                        "high_watermark": 0,
                        "segments": 0,
                        "bytes": 0,
                    },
                ],
            },
            {
                "name": "événements",
                "partitions": [
                    {
                        "partition": 0,
                        "earliest_offset": 0,
                        "high_watermark": 0,
                        "segments": 0,
                        "bytes": 0,
                    }
                ],
            },
        ],
    }


def test_table_lists_every_partition(
    store_url: tuple[str, LocalStreamHouse], capsys: pytest.CaptureFixture[str]
) -> None:
    url, lsh = store_url
    assert cli.main(["topics", "--metadata-url", url, "--organization", lsh.organization_id]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"organization {lsh.organization_id}"
    assert lines[1].split() == [
        "TOPIC",
        "PARTITION",
        "EARLIEST",
        "HIGH_WATERMARK",
        "SEGMENTS",
        "BYTES",
    ]
    assert lines[2].split()[:5] == ["orders", "0", "4", "10", "2"]
    assert lines[3].split() == ["orders", "1", "0", "0", "0", "0"]
    assert lines[4].split()[0] == "événements"


def test_several_organizations_fail_with_one_line_listing_them(
    store_url: tuple[str, LocalStreamHouse], capsys: pytest.CaptureFixture[str]
) -> None:
    url, lsh = store_url
    other = lsh.create_organization(name="second")
    assert cli.main(["topics", "--metadata-url", url, "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert "\n" not in err
    assert err.startswith("streamhouse-beam topics: OrganizationError:")
    assert lsh.organization_id in err and other in err


def test_not_a_streamhouse_store_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    path = tmp_path / "other.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.close()
    assert cli.main(["topics", "--metadata-url", f"sqlite:///{path}"]) == 1
    err = capsys.readouterr().err
    assert "NotAStreamHouseStoreError" in err and "'organizations'" in err


def test_password_never_reaches_the_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Nothing listens on port 1: the connection is refused; one attempt keeps the test fast.
    import streamhouse_beam.cli._topics as topics_cli
    from streamhouse_beam.metadata import MetadataStore, open_metadata

    def one_attempt(u: str, org: str | None = None) -> MetadataStore:
        return open_metadata(u, org, retry_attempts=1)

    monkeypatch.setattr(topics_cli, "open_metadata", one_attempt)
    url = "postgresql://reader:hunter2-secret@127.0.0.1:1/streamhouse"
    assert cli.main(["topics", "--metadata-url", url]) == 1
    captured = capsys.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert "MetadataUnavailableError" in captured.err
    assert "reader:***@127.0.0.1:1" in captured.err
