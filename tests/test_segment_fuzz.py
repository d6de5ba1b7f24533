"""Bounded-time fuzzing of the segment reader with random mutations of the golden fixtures.

Each example mutates a fixture (byte overwrites, inserted/deleted runs, truncation, optionally
a recomputed CRC so the damage gets past the checksum) and reads it with the CRC check off.
The only acceptable outcomes are a named ``SegmentError`` subclass or well-formed records.
The example count bounds the run time (a tenth of it under ``make test-fast``, see
conftest.examples); there is no per-example deadline, which on shared cores would fail a
slow machine rather than a wrong decoder, and the pytest timeout still stops a hang.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURE_SEGMENTS, examples
from streamhouse_beam.errors import (
    CorruptSegmentError,
    SegmentError,
    TruncatedSegmentError,
)
from streamhouse_beam.segment import SegmentReader, decode_records, decode_records_py
from streamhouse_beam.segment.format import FOOTER_SIZE
from tests.segment_damage import NAMED_SEGMENT_ERRORS, refresh_crc

# The small fixtures keep each example fast; together they cover both compressions,
# several blocks, gaps, wrapping deltas and every key shape.
SMALL = [
    "single_none",
    "single_lz4",
    "keys_empty_absent_none",
    "keys_empty_absent_lz4",
    "gapped_offsets_lz4",
    "gapped_offsets_none",
    "binary_all_bytes_lz4",
    "multiblock_bigvalues_lz4",
]
FIXTURES = {name: (FIXTURE_SEGMENTS / f"{name}.seg").read_bytes() for name in SMALL}


@st.composite
def mutated_segments(draw: st.DrawFn) -> bytes:
    data = bytearray(FIXTURES[draw(st.sampled_from(SMALL))])
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        kind = draw(st.sampled_from(["set", "set", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        pos = draw(st.integers(min_value=0, max_value=len(data) - 1))
        if kind == "set":
            data[pos] = draw(st.integers(min_value=0, max_value=255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(min_value=1, max_value=16))]
        else:
            del data[pos:]
    if len(data) >= FOOTER_SIZE and draw(st.booleans()):
        refresh_crc(data)
    return bytes(data)


def _check(data: bytes, verify_crc: bool, probe: int) -> None:
    try:
        reader = SegmentReader(data, key="fuzz.seg", verify_crc=verify_crc)
        records = reader.read_all()
        tail = reader.read_from_offset(probe)
    except SegmentError as exc:
        assert type(exc) in NAMED_SEGMENT_ERRORS, repr(exc)
        assert exc.key == "fuzz.seg"
        return
    assert len(records) == reader.header.record_count
    for offset, ts, key, value in records:
        assert 0 <= offset < 1 << 64 and 0 <= ts < 1 << 64
        assert key is None or (type(key) is bytes and key)
        assert type(value) is bytes
    offsets = [r[0] for r in records]
    if all(a < b for a, b in itertools.pairwise(offsets)):
        # Seeking agrees with filtering whenever the (possibly mutated) offsets still ascend.
        assert tail == [r for r in records if r[0] >= probe]


@pytest.mark.timeout(300)
@settings(
    max_examples=examples(2500),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=False,
)
@given(
    data=mutated_segments(),
    verify_crc=st.booleans(),
    probe=st.integers(min_value=0, max_value=(1 << 64) - 1),
)
def test_mutated_fixtures_give_named_errors_or_valid_records(
    data: bytes, verify_crc: bool, probe: int
) -> None:
    _check(data, verify_crc, probe)


@pytest.mark.timeout(300)
@settings(max_examples=examples(2000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    block=st.binary(max_size=200),
    first_offset=st.integers(min_value=0, max_value=(1 << 64) - 1),
    first_timestamp=st.integers(min_value=0, max_value=(1 << 64) - 1),
    legacy=st.booleans(),
)
def test_random_blocks_decode_or_fail_with_a_named_error(
    block: bytes, first_offset: int, first_timestamp: int, legacy: bool
) -> None:
    outcomes = []
    for decode in {decode_records_py, decode_records}:
        try:
            outcomes.append(("ok", decode(block, first_offset, first_timestamp, legacy, "b", 64)))
        except (CorruptSegmentError, TruncatedSegmentError) as exc:
            assert exc.position == 64 and exc.key == "b"
            outcomes.append((type(exc).__name__, str(exc)))
    # The C accelerator, when built, agrees with the pure-Python decoder on every input.
    assert all(o == outcomes[0] for o in outcomes)
