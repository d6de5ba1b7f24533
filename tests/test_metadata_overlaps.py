"""resolve_overlaps: the rule that turns overlapping segment rows into one readable sequence."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from streamhouse_beam.metadata import resolve_overlaps
from streamhouse_beam.records import SegmentInfo


def seg(base: int, end: int, created_at: int, sid: str | None = None) -> SegmentInfo:
    return SegmentInfo(
        id=sid or f"t-0-{base}-{created_at}",
        topic="t",
        partition=0,
        base_offset=base,
        end_offset=end,
        record_count=end - base + 1,
        size_bytes=100,
        bucket="b",
        key=f"k/{base}-{created_at}",
        created_at=created_at,
    )


def spans(result: list[SegmentInfo]) -> list[tuple[int, int, int]]:
    return [(s.base_offset, s.end_offset, s.created_at) for s in result]


def test_contiguous_rows_are_returned_unchanged() -> None:
    rows = [seg(10, 19, 2), seg(0, 9, 1), seg(20, 29, 3)]
    assert resolve_overlaps(rows) == sorted(rows, key=lambda s: s.base_offset)


def test_rows_ending_before_the_start_are_left_out() -> None:
    rows = [seg(0, 9, 1), seg(10, 19, 2)]
    assert spans(resolve_overlaps(rows, from_offset=10)) == [(10, 19, 2)]


def test_same_base_offset_newest_row_wins() -> None:
    assert spans(resolve_overlaps([seg(0, 9, 1), seg(0, 9, 5)])) == [(0, 9, 5)]


def test_newer_row_inside_an_older_one_splits_it_in_two() -> None:
    result = resolve_overlaps([seg(0, 40, 1), seg(10, 20, 2)])
    assert spans(result) == [(0, 9, 1), (10, 20, 2), (21, 40, 1)]
    # Narrowed pieces still name the whole object.
    assert result[0].key == result[2].key == "k/0-1"
    assert result[0].record_count == 41


def test_older_row_inside_a_newer_one_is_dropped() -> None:
    assert spans(resolve_overlaps([seg(10, 20, 1), seg(0, 40, 2)])) == [(0, 40, 2)]


def test_equal_created_at_prefers_the_wider_row() -> None:
    assert spans(resolve_overlaps([seg(5, 6, 3), seg(0, 9, 3)])) == [(0, 9, 3)]


def test_narrowed_piece_before_the_start_is_left_out() -> None:
    result = resolve_overlaps([seg(0, 40, 1), seg(10, 20, 2)], from_offset=15)
    assert spans(result) == [(10, 20, 2), (21, 40, 1)]


rows_strategy = st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 15), st.integers(0, 8)).map(
        lambda t: (t[0], t[0] + t[1], t[2])
    ),
    max_size=12,
)


@given(rows_strategy, st.integers(0, 80))
def test_every_offset_is_covered_once_by_its_newest_row(
    raw: list[tuple[int, int, int]], start: int
) -> None:
    rows = [seg(b, e, c, sid=f"r{i}") for i, (b, e, c) in enumerate(raw)]
    result = resolve_overlaps(rows, start)
    assert all(a.end_offset < b.base_offset for a, b in itertools.pairwise(result))
    assert all(s.end_offset >= start for s in result)
    owner = {}
    for s in result:
        for o in range(s.base_offset, s.end_offset + 1):
            owner[o] = s.id
    for o in range(start, 90):
        covering = [r for r in rows if r.base_offset <= o <= r.end_offset]
        if not covering:
            assert o not in owner
            continue
        best = min(covering, key=lambda r: (-r.created_at, -(r.end_offset - r.base_offset), r.id))
        assert owner[o] == best.id
