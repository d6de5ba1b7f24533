"""What a failing read raises to the caller of ``pipeline.run()``: the project's own error,
with its type and fields, not a ``RuntimeError`` that names it in its text."""

from __future__ import annotations

import pathlib

import pytest

from streamhouse_beam import (
    DataLossError,
    NoCommittedOffsetError,
    ReadFromStreamHouse,
    StartPosition,
    StopPosition,
    StreamHouseError,
    TopicPartition,
)
from tests.read_helpers import read_all, urls, write_topic


def test_no_committed_offset_reaches_the_caller_as_itself(tmp_path: pathlib.Path) -> None:
    write_topic(tmp_path, "orders", [[b"a", b"b"]])
    read = ReadFromStreamHouse(
        "orders",
        **urls(tmp_path),
        start=StartPosition.committed("billing", fallback="fail"),
        stop=StopPosition.latest(),
    )
    with pytest.raises(NoCommittedOffsetError) as info:
        read_all(read)
    assert info.value.group == "billing"
    assert info.value.topic_partition == TopicPartition("orders", 0)
    assert "'billing'" in str(info.value)


def test_errors_with_keyword_fields_keep_them_through_the_pipeline(
    tmp_path: pathlib.Path,
) -> None:
    lsh = write_topic(tmp_path, "orders", [[b"a", b"b", b"c"]], segment_max_records=1)
    lost = lsh.segments("orders", 0)[1]
    lsh.store.delete(lost.key, bucket=lost.bucket)
    read = ReadFromStreamHouse("orders", **urls(tmp_path), stop=StopPosition.latest())
    with pytest.raises(DataLossError) as info:
        read_all(read)
    assert (info.value.topic, info.value.partition) == ("orders", 0)
    assert (info.value.start_offset, info.value.end_offset) == (1, 1)


def test_no_committed_offset_error_is_in_the_errors_tree() -> None:
    from streamhouse_beam import errors, positions

    assert issubclass(NoCommittedOffsetError, StreamHouseError)
    assert errors.NoCommittedOffsetError is positions.NoCommittedOffsetError
    assert "NoCommittedOffsetError" in (errors.__doc__ or "")
