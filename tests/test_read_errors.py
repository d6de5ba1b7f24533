"""What a failing read raises to the caller of ``pipeline.run()``: the project's own error,
with its type and fields, not a ``RuntimeError`` that names it in its text."""

from __future__ import annotations

import logging
import pathlib
import threading

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


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("streamhouse_beam")
    ]


def test_a_start_beyond_the_end_warns_naming_the_partition_and_positions(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_topic(tmp_path, "orders", [[b"a", b"b", b"c"], []])
    read = ReadFromStreamHouse(
        "orders",
        **urls(tmp_path),
        start=StartPosition.offsets({0: 50}),
        stop=StopPosition.latest(),
    )
    with caplog.at_level(logging.WARNING, logger="streamhouse_beam"):
        assert read_all(read) == []
    [message] = _warnings(caplog)  # the empty partition 1 read from 0 to 0 is not worth one
    assert "topic 'orders' partition 0" in message
    assert "start offset 50" in message and "stop offset 50" in message
    assert "readable offsets 0..2" in message


def test_a_stop_before_the_start_warns(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_topic(tmp_path, "orders", [[b"a", b"b", b"c", b"d"]])
    read = ReadFromStreamHouse(
        "orders",
        **urls(tmp_path),
        start=StartPosition.offsets({0: 3}),
        stop=StopPosition.offsets({0: 1}),
    )
    with caplog.at_level(logging.WARNING, logger="streamhouse_beam"):
        assert read_all(read) == []
    [message] = _warnings(caplog)
    assert "topic 'orders' partition 0" in message and "nothing to read" in message
    assert "start offset 3" in message and "offsets({0: 1}" in message


def test_a_tailing_start_beyond_the_end_warns_that_it_waits(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    lsh = write_topic(tmp_path, "orders", [[b"a", b"b"]])
    read = ReadFromStreamHouse(
        "orders",
        **urls(tmp_path),
        start=StartPosition.offsets({0: 9}),
        max_records=1,
        poll_interval=0.01,
        max_poll_seconds=0.05,
    )

    def append_later() -> None:
        lsh.append("orders", 0, [b"x"] * 10, flush=True)

    timer = threading.Timer(1.0, append_later)
    timer.start()
    try:
        with caplog.at_level(logging.WARNING, logger="streamhouse_beam"):
            [record] = read_all(read)
    finally:
        timer.cancel()
    assert record.offset == 9
    [message] = _warnings(caplog)
    assert "start offset 9" in message and "beyond the readable end 2" in message
    assert "waits until offset 9" in message
