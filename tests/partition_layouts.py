"""Partitions laid out as StreamHouse writes them, for the PartitionReader tests.

``tests/test_partition_reader.py`` (``read``) and ``tests/test_read_columns.py`` (``read``
against ``read_columns``) read the same layouts over the same stores: the ``store`` fixture
(import it into the test module), a LocalStreamHouse on it, deterministic records and the
gapped partition that exercises every kind of hole.
"""

from __future__ import annotations

import itertools
import pathlib
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse

Rec = tuple[int, int, "bytes | None", bytes]
#: (start, stop) pairs over :func:`gapped_partition`: before, inside and across its holes, past
#: its end, empty and reversed.
GAPPED_STOP_RANGES = [
    (0, 1),
    (0, 6),
    (5, 40),
    (39, 41),
    (100, 130),
    (120, 150),
    (130, 151),
    (0, 401),
    (399, 10_000),
    (200, 200),
    (300, 250),
]
_NAMES = itertools.count()


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> Iterator[ObjectStore]:
    """A file:// store under tmp_path, or a fresh memory:// one (emptied afterwards)."""
    if request.param == "file":
        yield open_store((tmp_path / "storage").as_uri())
    else:
        mem = open_store(f"memory://reader-test-{next(_NAMES)}")
        yield mem
        mem.clear()  # type: ignore[attr-defined]
        mem.clear(bucket="streamhouse")  # type: ignore[attr-defined]


def make_lsh(tmp_path: pathlib.Path, store: ObjectStore, **kwargs: Any) -> LocalStreamHouse:
    """A LocalStreamHouse over SQLite in tmp_path and ``store``, its schema created."""
    lsh = LocalStreamHouse(f"sqlite:///{tmp_path / 'meta.db'}", store, **kwargs)
    lsh.create_schema()
    return lsh


def one_partition(
    tmp_path: pathlib.Path, store: ObjectStore, values: list[bytes] | None = None
) -> LocalStreamHouse:
    """:func:`make_lsh` with topic ``t`` of one partition holding ``values`` from offset 0
    in one flushed segment (an empty partition when ``values`` is None)."""
    lsh = make_lsh(tmp_path, store)
    lsh.create_topic("t", partitions=1)
    if values is not None:
        lsh.append("t", 0, values, flush=True)
    return lsh


def rec(offset: int, ts: int | None = None, size: int = 20) -> Rec:
    """A deterministic record; keys on even offsets only."""
    value = (f"v{offset}-".encode() * size)[:size]
    key = f"k{offset % 7}".encode() if offset % 2 == 0 else None
    return (offset, DEFAULT_CLOCK_START_MS + offset if ts is None else ts, key, value)


def gapped_partition(lsh: LocalStreamHouse, topic: str = "t") -> list[Rec]:
    """Segments with a hole before the first, between segments, inside (compacted) and
    multi-block ones; returns every record in offset order (401 is the readable end)."""
    lsh.create_topic(topic, partitions=1)
    layout = [
        list(range(5, 40)),  # 0..4 never existed
        [o for o in range(40, 120) if o % 3 != 0],  # compacted: offsets missing inside
        list(range(150, 400)),  # 120..149: a gap between segments
        list(range(400, 401)),  # a one-record segment
    ]
    out: list[Rec] = []
    for offsets in layout:
        records = [rec(o, size=60) for o in offsets]
        lsh.write_segment(topic, 0, records)
        out += records
    return out


def three_segments(
    tmp_path: pathlib.Path, store: ObjectStore, topic: str = "t"
) -> LocalStreamHouse:
    """A LocalStreamHouse whose ``topic`` holds offsets 0..29 (values ``r0``..``r29``) in three
    ten-record segments; the middle one is the one the loss tests delete."""
    lsh = make_lsh(tmp_path, store, segment_max_records=10)
    lsh.create_topic(topic, partitions=1)
    lsh.append(topic, 0, [f"r{i}".encode() for i in range(30)], flush=True)
    return lsh


def overlapping_partition(lsh: LocalStreamHouse) -> list[int]:
    """Topic ``t``: offsets 0..29, then a newer, compacted object over 10..18 in which only even
    offsets survive (19 stays in the old one); returns the offsets a reader must yield, once each.
    """
    lsh.create_topic("t", partitions=1)
    old = [rec(o, size=10) for o in range(0, 30)]
    lsh.write_segment("t", 0, old)
    new = [(o, t, k, b"compacted") for o, t, k, _ in old[10:20] if o % 2 == 0]
    lsh.write_segment(
        "t", 0, new, key="data/t/0/compacted-10.seg", segment_id="c10", set_high_watermark=False
    )
    return [*range(10), 10, 12, 14, 16, 18, *range(19, 30)]


def record_values(records: list[Rec] | pa.RecordBatch) -> list[bytes]:
    """The values of what ``read`` (tuples) or ``read_columns`` (a RecordBatch) returned."""
    if isinstance(records, pa.RecordBatch):
        return list(records.column("value").to_pylist())
    return [r[3] for r in records]
