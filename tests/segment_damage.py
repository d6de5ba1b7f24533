"""What damaged-segment tests share: the errors a damaged segment may raise, and a CRC fix-up.

A reader given damaged bytes must fail with one of :data:`NAMED_SEGMENT_ERRORS` (never the
``SegmentError`` base itself, and never a bare Python error); :func:`refresh_crc` lets a
deliberate change get past the footer checksum so the deeper checks are exercised too.
"""

from __future__ import annotations

import struct
import zlib

from streamhouse_beam.errors import (
    ChecksumMismatchError,
    CorruptSegmentError,
    SegmentLimitError,
    TruncatedSegmentError,
    UnsupportedSegmentError,
)
from streamhouse_beam.segment.format import FOOTER_SIZE

NAMED_SEGMENT_ERRORS = (
    CorruptSegmentError,
    TruncatedSegmentError,
    ChecksumMismatchError,
    SegmentLimitError,
    UnsupportedSegmentError,
)


def refresh_crc(data: bytearray) -> bytes:
    """Recompute the footer CRC of ``data`` in place; return the bytes."""
    struct.pack_into(">I", data, len(data) - FOOTER_SIZE + 8, zlib.crc32(data[:-FOOTER_SIZE]))
    return bytes(data)
