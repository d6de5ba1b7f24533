"""ReadFromStreamHouse on FnApiRunner against every backend pair: SQLite or PostgreSQL metadata,
and local, S3 (moto_server) or GCS (gcp-storage-emulator) segments."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition
from streamhouse_beam.storage import open_store
from streamhouse_beam.testing.local import LocalStreamHouse
from tests.read_helpers import read_all

pytestmark = pytest.mark.slow


def _s3(moto: Any) -> tuple[str, dict[str, Any]]:
    import boto3

    bucket = f"b-{uuid.uuid4().hex[:16]}"
    options = moto.credentials()
    boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        region_name=options["region_name"],
        aws_access_key_id=options["aws_access_key_id"],
        aws_secret_access_key=options["aws_secret_access_key"],
    ).create_bucket(Bucket=bucket)
    return f"s3://{bucket}", options


def _gcs(emulator: Any) -> tuple[str, dict[str, Any]]:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    bucket = f"b-{uuid.uuid4().hex[:16]}"
    storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": emulator.endpoint},
    ).create_bucket(bucket)
    return f"gs://{bucket}", {"endpoint": emulator.endpoint, "anonymous": True}


@pytest.fixture(params=["sqlite", "postgres"])
def metadata_url(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/metadata.db"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture(params=["file", "s3", "gcs"])
def storage(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> tuple[str, dict[str, Any]]:
    if request.param == "file":
        return f"file://{tmp_path}/segments", {}
    if request.param == "s3":
        return _s3(request.getfixturevalue("moto_server"))
    return _gcs(request.getfixturevalue("gcs_emulator"))


def _house(
    metadata_url: str, storage: tuple[str, dict[str, Any]], **kwargs: Any
) -> LocalStreamHouse:
    url, options = storage
    lsh = LocalStreamHouse(metadata_url, open_store(url, options), **kwargs)
    lsh.create_schema()
    return lsh


def test_bounded_read_is_exact_on_every_backend(
    metadata_url: str, storage: tuple[str, dict[str, Any]]
) -> None:
    lsh = _house(metadata_url, storage, segment_max_records=13)
    lsh.create_topic("events", 3)
    expected = set()
    for p in range(3):
        values = [(f"k{i % 5}", f"p{p}-{i}") for i in range(40 + p)]
        lsh.append("events", p, values, flush=True)
        expected |= {(p, i, f"p{p}-{i}".encode()) for i in range(40 + p)}
    records = read_all(
        ReadFromStreamHouse(
            "events",
            metadata_url=metadata_url,
            storage_url=storage[0],
            storage_options=storage[1],
            organization_id=lsh.organization_id,
            stop=StopPosition.latest(),
            max_poll_records=16,
        )
    )
    assert len(records) == len(expected)
    assert {(r.partition, r.offset, r.value) for r in records} == expected


def test_commit_and_resume_on_postgres_and_s3(postgres_url: str, moto_server: Any) -> None:
    storage = _s3(moto_server)
    lsh = _house(postgres_url, storage, segment_max_records=10)
    lsh.create_topic("orders", 2)
    for p in range(2):
        lsh.append("orders", p, [f"a{p}-{i}" for i in range(25)], flush=True)
    common = {
        "metadata_url": postgres_url,
        "storage_url": storage[0],
        "storage_options": storage[1],
        "commit_offsets_group": "billing",
    }
    first = read_all(
        ReadFromStreamHouse(
            "orders", **common, max_records=30, poll_interval=0.05, max_poll_records=7
        )
    )
    assert len(first) == 30
    for p in range(2):
        lsh.append("orders", p, [f"b{p}-{i}" for i in range(5)], flush=True)
    rest = read_all(
        ReadFromStreamHouse(
            "orders", **common, start=StartPosition.committed("billing"), stop=StopPosition.latest()
        )
    )
    seen = sorted((r.partition, r.offset) for r in first + rest)
    assert seen == [(p, o) for p in range(2) for o in range(30)]


@pytest.mark.parametrize("backend", ["s3", "gcs"])
def test_the_url_bucket_is_read_and_a_missing_one_is_a_configuration_error(
    request: pytest.FixtureRequest, tmp_path: pathlib.Path, backend: str
) -> None:
    from streamhouse_beam import StorageRootNotFoundError

    make = _s3 if backend == "s3" else _gcs
    server = request.getfixturevalue("moto_server" if backend == "s3" else "gcs_emulator")
    original, options = make(server)
    replica, _ = make(server)
    scheme = original.split("://")[0]
    lsh = _house(f"sqlite:///{tmp_path}/metadata.db", (original, options))
    lsh.create_topic("orders", 1)
    lsh.append("orders", 0, [b"a", b"b"], flush=True)
    # Copy the objects to a replica bucket; the rows keep naming the original.
    source, copy = open_store(original, options), open_store(replica, options)
    for seg in lsh.segments("orders", 0):
        copy.put(seg.key, source.get(seg.key))
    for seg in lsh.segments("orders", 0):
        source.delete(seg.key)

    def read(storage_url: str, **kwargs: Any) -> list[Any]:
        return read_all(
            ReadFromStreamHouse(
                "orders",
                metadata_url=f"sqlite:///{tmp_path}/metadata.db",
                storage_url=storage_url,
                storage_options=options,
                stop=StopPosition.latest(),
                **kwargs,
            )
        )

    assert sorted(r.value for r in read(replica)) == [b"a", b"b"]
    nobucket = f"{scheme}://nobucket-{uuid.uuid4().hex[:12]}"
    for policy in ("fail", "skip"):
        with pytest.raises(StorageRootNotFoundError, match="nobucket"):
            read(nobucket, on_missing_segment=policy)
