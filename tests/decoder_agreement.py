"""The checks two block decoders must pass to count as twins, written once for both pairs.

``tests/test_speedups_parity.py`` (C ``decode_records`` vs pure Python) and
``tests/test_columns.py`` (``decode_columns``, C and pure Python, vs ``decode_records_py``)
each subclass :class:`DecoderAgreement` with their own ``assert_same(data, first_offset,
first_timestamp, legacy)``, which asserts that their decoders agree and returns the common
:func:`outcome`, and ``count(result)``, the number of records in a result. The inputs: every
golden fixture block (as bytes, memoryview and bytearray, with both legacy settings), every
truncation and byte flip of small blocks, hand-made edge blocks and a non-contiguous buffer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from conftest import FIXTURE_SEGMENTS
from streamhouse_beam.errors import SegmentError
from streamhouse_beam.segment import SegmentReader, decompress_block

U64 = 2**64 - 1
CASES = sorted(p.stem for p in FIXTURE_SEGMENTS.glob("*.seg"))
#: Fixtures whose first block is small enough to try every truncation of. The 13 KB block of
#: gapped_offsets_none takes 5-25 s per decoder pair, so only the full run (not -m "not slow")
#: tries it.
TRUNCATED_CASES = [
    "single_none",
    "keys_empty_absent_none",
    pytest.param("gapped_offsets_none", marks=pytest.mark.slow),
]
#: Fixtures whose first block is small enough to try five values at every byte.
FLIPPED_CASES = ["single_none", "keys_empty_absent_none"]
#: Blocks at the edges of the format, each valid or not for a reason.
EDGE_BLOCKS = [
    b"",
    b"\x80" * 9,  # truncated varint
    b"\x80" * 10,  # ten continuation bytes: corrupt even at the end
    b"\xff" * 9 + b"\x7f" + b"\x00\x00\x00",  # 10-byte varint, high bits dropped
    b"\x00\x00\x05ab",  # key runs past the end
    b"\x00\x00\x00\x05abc",  # value runs past the end
    b"\x00\x00" + b"\xff" * 9 + b"\x01",  # key length 2**64-1: need beyond 2**64
    b"\x00\x00\x00\x00" + b"\x02\x00\x00\x00",  # second record, offset +1
    b"\x00\x00\x00\x00" + b"\x02\x01\x00\x00",  # timestamps going backwards
]


def outcome(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    """``("ok", result)``, or ``("error", (class, message, key, position))`` of a SegmentError."""
    try:
        return "ok", fn(*args)
    except SegmentError as exc:
        return "error", (type(exc), str(exc), exc.key, exc.position)


def segment_blocks(data: bytes, key: str | None = None) -> list[tuple[bytes, int, int, bool]]:
    """The decompressed blocks of a segment: ``(raw, first offset, first timestamp, legacy)``
    each, legacy for every block after the first (what the decoders are called with)."""
    reader = SegmentReader(data, key=key)
    out = []
    for i, entry in enumerate(reader.index):
        start, end = reader.block_range(i)
        raw = decompress_block(
            data[start:end], reader.compression, max_bytes=2**30, key=key, position=start
        )
        out.append((bytes(raw), entry.offset, entry.timestamp, i > 0))
    return out


def fixture_blocks(case: str) -> list[tuple[bytes, int, int, bool]]:
    """The decompressed blocks of the golden fixture ``case`` (see :func:`segment_blocks`)."""
    return segment_blocks((FIXTURE_SEGMENTS / f"{case}.seg").read_bytes(), key=case)


class DecoderAgreement:
    """Agreement tests for a pair of decoders; subclass as ``Test...`` and override both."""

    @staticmethod
    def assert_same(data: Any, first_offset: int, first_ts: int, legacy: bool) -> tuple[str, Any]:
        """Decode with both decoders, assert equal outcomes and return the outcome."""
        raise NotImplementedError("a DecoderAgreement subclass defines assert_same")

    @staticmethod
    def count(result: Any) -> int:
        """The number of records in a successful result."""
        raise NotImplementedError("a DecoderAgreement subclass defines count")

    @pytest.mark.parametrize("case", CASES)
    def test_every_fixture_block_decodes_identically(self, case: str) -> None:
        for raw, first_offset, first_ts, legacy in fixture_blocks(case):
            kind, result = self.assert_same(raw, first_offset, first_ts, legacy)
            assert kind == "ok" and self.count(result) > 0
            # The other legacy setting and other buffer types must agree too.
            self.assert_same(raw, first_offset, first_ts, not legacy)
            self.assert_same(memoryview(raw), first_offset, first_ts, legacy)
            self.assert_same(bytearray(raw), first_offset, first_ts, legacy)

    @pytest.mark.parametrize("case", TRUNCATED_CASES)
    def test_every_truncation_of_a_small_block_raises_the_same_error(self, case: str) -> None:
        raw, first_offset, first_ts, legacy = fixture_blocks(case)[0]
        for n in range(len(raw)):
            self.assert_same(raw[:n], first_offset, first_ts, legacy)

    @pytest.mark.parametrize("case", FLIPPED_CASES)
    def test_every_byte_flip_of_a_small_block_gives_the_same_outcome(self, case: str) -> None:
        raw, first_offset, first_ts, legacy = fixture_blocks(case)[0]
        for i in range(len(raw)):
            for value in (0x00, 0x7F, 0x80, 0xFF, raw[i] ^ 0x01):
                flipped = raw[:i] + bytes([value]) + raw[i + 1 :]
                self.assert_same(flipped, first_offset, first_ts, legacy)

    @pytest.mark.parametrize("data", EDGE_BLOCKS)
    def test_edge_blocks_agree(self, data: bytes) -> None:
        for legacy in (False, True):
            for first in (0, 1, U64):
                self.assert_same(data, first, U64 - first, legacy)

    def test_non_contiguous_memoryview_decodes_like_bytes(self) -> None:
        raw, first_offset, first_ts, legacy = fixture_blocks("keys_empty_absent_none")[0]
        strided = memoryview(bytes(b for x in raw for b in (x, 0)))[::2]
        assert not strided.contiguous
        assert self.assert_same(strided, first_offset, first_ts, legacy) == self.assert_same(
            raw, first_offset, first_ts, legacy
        )
