"""Coders and schema row types for what the read transforms emit.

* :class:`StreamHouseRecordCoder` — the registered, deterministic, versioned coder of
  :class:`~streamhouse_beam.records.StreamHouseRecord`. Values that are ``bytes`` (the default)
  or ``str`` are written directly; decoded values (JSON, Avro) go through Beam's deterministic
  primitives coder, so grouping by a record stays stable across workers.
* :class:`StreamHouseRow` / :class:`StreamHouseTextRow` — ``NamedTuple`` schema types
  (``output="rows"``) for Beam SQL, YAML and DataFrames: ``topic``, ``partition``, ``offset``,
  ``timestamp`` (ms), ``key`` (nullable bytes) and ``value`` (bytes, or str with a UTF-8
  decoder).
* :class:`DeadLetterRecord` — what the dead-letter output carries: the record's position, its
  raw value bytes and the reason decoding failed.
* :class:`DeterministicCoder` — the base of this package's coders (records, restrictions,
  watermark state, Arrow batches).
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

from apache_beam import coders
from apache_beam.coders import Coder
from apache_beam.coders.coder_impl import create_InputStream, create_OutputStream

from streamhouse_beam.errors import StreamHouseError
from streamhouse_beam.records import StreamHouseRecord

__all__ = [
    "DeadLetterRecord",
    "DeadLetterRecordCoder",
    "DeterministicCoder",
    "StreamHouseRecordCoder",
    "StreamHouseRow",
    "StreamHouseTextRow",
]


class StreamHouseRow(NamedTuple):
    """A record as a Beam schema row (``output="rows"``, bytes values)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes


class StreamHouseTextRow(NamedTuple):
    """A record as a Beam schema row with a text value (``output="rows"``, UTF-8 decoder)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: str


class DeadLetterRecord(NamedTuple):
    """A record whose value could not be decoded (the ``dead_letter`` output)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes
    reason: str


class DeterministicCoder(Coder):  # type: ignore[misc]
    """Base of this package's coders: deterministic, and equal to every coder of its type.

    They take no arguments (at most they cache a helper coder), so any two of one type encode
    alike; runners compare coders to share and fuse them.
    """

    def is_deterministic(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


_VALUE_BYTES = 0
_VALUE_STR = 1
_VALUE_OTHER = 2
_VALUE_NONE = 3


def _check_version(encoded_version: int, expected: int, what: str) -> None:
    if encoded_version != expected:
        raise StreamHouseError(
            f"cannot decode a {what}: encoding version {encoded_version} is not {expected} "
            "(written by a different streamhouse-beam version?)"
        )


class StreamHouseRecordCoder(DeterministicCoder):
    """Deterministic, versioned coder of :class:`StreamHouseRecord`.

    Layout: version byte (1); topic (var-int length + UTF-8); partition, offset and timestamp
    (var-ints); key (flag byte, then var-int length + bytes); value kind byte then the value:
    bytes or UTF-8 text with a var-int length, or the deterministic primitives encoding.
    """

    VERSION = 1

    def __init__(self) -> None:
        self._other: Coder | None = None

    def _other_coder(self) -> Coder:
        if self._other is None:
            self._other = coders.FastPrimitivesCoder().as_deterministic_coder(
                "StreamHouseRecord.value"
            )
        return self._other

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._other = None

    def encode(self, value: StreamHouseRecord) -> bytes:
        out = create_OutputStream()
        out.write_byte(self.VERSION)
        _write_record_head(
            out, value.topic, value.partition, value.offset, value.timestamp, value.key
        )
        v = value.value
        if isinstance(v, bytes):
            out.write_byte(_VALUE_BYTES)
            out.write(v, True)
        elif isinstance(v, str):
            out.write_byte(_VALUE_STR)
            out.write(v.encode("utf-8"), True)
        elif v is None:
            out.write_byte(_VALUE_NONE)
        else:
            out.write_byte(_VALUE_OTHER)
            out.write(self._other_coder().encode(v), True)
        return bytes(out.get())

    def decode(self, encoded: bytes) -> StreamHouseRecord:
        stream = create_InputStream(encoded)
        _check_version(stream.read_byte(), self.VERSION, "StreamHouseRecord")
        topic, partition, offset, timestamp, key = _read_record_head(stream)
        kind = stream.read_byte()
        value: object
        if kind == _VALUE_BYTES:
            value = stream.read_all(True)
        elif kind == _VALUE_STR:
            value = stream.read_all(True).decode("utf-8")
        elif kind == _VALUE_NONE:
            value = None
        elif kind == _VALUE_OTHER:
            value = self._other_coder().decode(stream.read_all(True))
        else:
            raise StreamHouseError(f"cannot decode a StreamHouseRecord: unknown value kind {kind}")
        return StreamHouseRecord(topic, partition, offset, timestamp, key, value)

    def to_type_hint(self) -> type:
        return StreamHouseRecord


class DeadLetterRecordCoder(DeterministicCoder):
    """Deterministic, versioned coder of :class:`DeadLetterRecord`."""

    VERSION = 1

    def encode(self, value: DeadLetterRecord) -> bytes:
        out = create_OutputStream()
        out.write_byte(self.VERSION)
        _write_record_head(
            out, value.topic, value.partition, value.offset, value.timestamp, value.key
        )
        out.write(value.value, True)
        out.write(value.reason.encode("utf-8"), True)
        return bytes(out.get())

    def decode(self, encoded: bytes) -> DeadLetterRecord:
        stream = create_InputStream(encoded)
        _check_version(stream.read_byte(), self.VERSION, "DeadLetterRecord")
        topic, partition, offset, timestamp, key = _read_record_head(stream)
        raw = stream.read_all(True)
        reason = stream.read_all(True).decode("utf-8")
        return DeadLetterRecord(topic, partition, offset, timestamp, key, raw, reason)

    def to_type_hint(self) -> type:
        return DeadLetterRecord


_U64 = struct.Struct(">Q")


def _write_record_head(
    out: Any, topic: str, partition: int, offset: int, timestamp: int, key: bytes | None
) -> None:
    out.write(topic.encode("utf-8"), True)
    out.write_var_int64(partition)
    # Offsets and timestamps are u64 in the format; fixed width keeps the full range.
    out.write(_U64.pack(offset))
    out.write(_U64.pack(timestamp))
    if key is None:
        out.write_byte(0)
    else:
        out.write_byte(1)
        out.write(key, True)


def _read_record_head(stream: Any) -> tuple[str, int, int, int, bytes | None]:
    topic = stream.read_all(True).decode("utf-8")
    partition = stream.read_var_int64()
    offset = _U64.unpack(stream.read(8))[0]
    timestamp = _U64.unpack(stream.read(8))[0]
    key = stream.read_all(True) if stream.read_byte() else None
    return topic, partition, offset, timestamp, key


def register_coders() -> None:
    """Register the coders and row schemas with Beam's global registry (idempotent)."""
    coders.registry.register_coder(StreamHouseRecord, StreamHouseRecordCoder)
    coders.registry.register_coder(DeadLetterRecord, DeadLetterRecordCoder)
    coders.registry.register_coder(StreamHouseRow, coders.RowCoder)
    coders.registry.register_coder(StreamHouseTextRow, coders.RowCoder)


register_coders()
