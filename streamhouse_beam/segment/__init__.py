"""StreamHouse segment files: bytes in, records out (and the writer for the other direction).

Never does I/O: callers hand in the object's bytes (or a range-fetch callable). See
``format.py`` for the byte-level specification.
"""

from __future__ import annotations

from streamhouse_beam.segment.decode import (
    decode_records,
    decode_records_py,
    decompress_block,
    speedups_active,
)
from streamhouse_beam.segment.format import (
    BLOCK_SIZE_TARGET,
    DEFAULT_MAX_BLOCK_BYTES,
    FOOTER_SIZE,
    HEADER_SIZE,
    MAGIC,
    VERSION,
    Compression,
    IndexEntry,
    SegmentFooter,
    SegmentHeader,
    parse_footer,
    parse_header,
    parse_index,
)
from streamhouse_beam.segment.reader import FetchRange, Record, SegmentReader
from streamhouse_beam.segment.writer import SegmentWriter, write_segment

__all__ = [
    "BLOCK_SIZE_TARGET",
    "DEFAULT_MAX_BLOCK_BYTES",
    "FOOTER_SIZE",
    "HEADER_SIZE",
    "MAGIC",
    "VERSION",
    "Compression",
    "FetchRange",
    "IndexEntry",
    "Record",
    "SegmentFooter",
    "SegmentHeader",
    "SegmentReader",
    "SegmentWriter",
    "decode_records",
    "decode_records_py",
    "decompress_block",
    "parse_footer",
    "parse_header",
    "parse_index",
    "speedups_active",
    "write_segment",
]
