"""A storage url means what it says: the bucket it names is the one read, and a root or bucket
that does not exist is a configuration error, never skipped as missing segments."""

from __future__ import annotations

import pathlib
import uuid
from collections.abc import Iterator

import pytest

from streamhouse_beam import (
    DataLossError,
    ReadFromStreamHouse,
    StopPosition,
    StorageRootNotFoundError,
)
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse
from tests.read_helpers import read_all, write_topic


@pytest.mark.parametrize("on_missing_segment", ["fail", "skip"])
def test_a_file_root_that_does_not_exist_fails_whatever_on_missing_segment_says(
    tmp_path: pathlib.Path, on_missing_segment: str
) -> None:
    write_topic(tmp_path, "t", [[b"a", b"b"]])
    read = ReadFromStreamHouse(
        "t",
        metadata_url=f"sqlite:///{tmp_path}/metadata.db",
        storage_url=f"file://{tmp_path}/segmnts",  # the typo
        stop=StopPosition.latest(),
        on_missing_segment=on_missing_segment,
    )
    with pytest.raises(StorageRootNotFoundError, match="segmnts"):
        read_all(read)


def test_a_missing_segment_under_an_existing_root_is_still_data_loss(
    tmp_path: pathlib.Path,
) -> None:
    lsh = write_topic(tmp_path, "t", [[b"a", b"b"]], segment_max_records=1)
    seg = lsh.segments("t", 0)[0]
    lsh.store.delete(seg.key)
    read = ReadFromStreamHouse(
        "t",
        metadata_url=f"sqlite:///{tmp_path}/metadata.db",
        storage_url=f"file://{tmp_path}/segments",
        stop=StopPosition.latest(),
    )
    with pytest.raises(DataLossError):
        read_all(read)


@pytest.fixture()
def replica(tmp_path: pathlib.Path) -> Iterator[tuple[LocalStreamHouse, str]]:
    """Rows that say bucket "streamhouse", objects only in a replica bucket."""
    name = f"replica-{uuid.uuid4().hex}"
    lsh = LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", f"memory://{name}", bucket="streamhouse"
    )
    lsh.create_schema()
    lsh.create_topic("t", 1)
    lsh.append("t", 0, [b"a", b"b", b"c"], flush=True)
    assert {seg.bucket for seg in lsh.segments("t", 0)} == {"streamhouse"}
    yield lsh, name
    MemoryStore(name).clear()


def _read(tmp_path: pathlib.Path, storage_url: str, **kwargs: object) -> list[bytes]:
    read = ReadFromStreamHouse(
        "t",
        metadata_url=f"sqlite:///{tmp_path}/metadata.db",
        storage_url=storage_url,
        stop=StopPosition.latest(),
        **kwargs,  # type: ignore[arg-type]
    )
    return sorted(r.value for r in read_all(read))


def test_the_url_bucket_is_read_whatever_the_rows_say(
    tmp_path: pathlib.Path, replica: tuple[LocalStreamHouse, str]
) -> None:
    _, name = replica
    assert _read(tmp_path, f"memory://{name}") == [b"a", b"b", b"c"]


@pytest.mark.parametrize("on_missing_segment", ["fail", "skip"])
def test_a_url_bucket_that_does_not_exist_fails_even_when_the_rows_bucket_does(
    tmp_path: pathlib.Path, replica: tuple[LocalStreamHouse, str], on_missing_segment: str
) -> None:
    lsh, name = replica
    MemoryStore("streamhouse").put("x", b"the rows' bucket exists")
    try:
        for seg in lsh.segments("t", 0):
            MemoryStore("streamhouse").put(seg.key, MemoryStore(name).get(seg.key))
        with pytest.raises(StorageRootNotFoundError, match="nobucket"):
            _read(tmp_path, "memory://nobucket", on_missing_segment=on_missing_segment)
        # A bucket-less url reads the rows' bucket.
        assert _read(tmp_path, "memory://") == [b"a", b"b", b"c"]
    finally:
        MemoryStore("streamhouse").clear()


def test_a_bucketless_url_whose_row_bucket_does_not_exist_fails(
    tmp_path: pathlib.Path, replica: tuple[LocalStreamHouse, str]
) -> None:
    with pytest.raises(StorageRootNotFoundError, match="streamhouse"):
        _read(tmp_path, "memory://", on_missing_segment="skip")


def test_the_transform_docstring_says_which_bucket_is_read() -> None:
    doc = " ".join((ReadFromStreamHouse.__doc__ or "").split())
    assert "whatever the segment rows say" in doc
    assert "only a bucket-less" in doc
