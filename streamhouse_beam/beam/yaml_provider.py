"""The Beam YAML provider's transform: ``type: ReadFromStreamHouse`` in a YAML pipeline.

``transforms/streamhouse.yaml`` names :func:`read_from_streamhouse`; a pipeline that lists that
file under ``providers:`` (``- include: path/to/streamhouse.yaml``) can use the type. The
transform outputs schema rows (``output="rows"``)::

    topic: str, partition: int, offset: int, timestamp: int (ms), key: bytes | null,
    value: str (value_decoder "utf-8", the default here) or bytes (value_decoder "bytes")

YAML spells positions and the event-time policy as text; every other option left out takes
the read's default (:mod:`streamhouse_beam.settings`), as on the command line.
"""

# No ``from __future__ import annotations`` and ``Optional`` rather than ``X | None``: Beam
# YAML derives the transform's config schema from the evaluated annotations, and reads
# ``Optional[str]`` as a nullable string but ``str | None`` (on Python 3.10) as any object.
# ruff: noqa: UP045

from typing import Any, Optional

from streamhouse_beam.beam._event_time import EventTimePolicy
from streamhouse_beam.beam._transforms import ReadFromStreamHouse
from streamhouse_beam.positions import StartPosition, StopPosition

__all__ = ["EVENT_TIMES", "ROW_DECODERS", "read_from_streamhouse"]

#: ``value_decoder`` values whose rows have a schema: text values and bytes values.
ROW_DECODERS = ("utf-8", "bytes")

#: ``event_time`` values.
EVENT_TIMES = ("record_time", "processing_time")


def _policy(event_time: str, max_out_of_orderness_seconds: float) -> EventTimePolicy:
    if event_time == "record_time":
        return EventTimePolicy.bounded_out_of_orderness(max_out_of_orderness_seconds)
    if event_time == "processing_time":
        if max_out_of_orderness_seconds:
            raise ValueError(
                "max_out_of_orderness_seconds applies to event_time record_time; "
                "processing_time has no late records"
            )
        return EventTimePolicy.processing_time()
    raise ValueError(f"event_time must be 'record_time' or 'processing_time', got {event_time!r}")


def read_from_streamhouse(
    topic: str,
    metadata_url: str,
    storage_url: Optional[str] = None,
    organization_id: Optional[str] = None,
    start: Optional[str] = None,
    stop: Optional[str] = None,
    max_records: Optional[int] = None,
    max_poll_records: Optional[int] = None,
    max_poll_bytes: Optional[int] = None,
    poll_interval: Optional[float] = None,
    value_decoder: str = "utf-8",
    commit_offsets_group: Optional[str] = None,
    event_time: str = "record_time",
    max_out_of_orderness_seconds: float = 0.0,
) -> ReadFromStreamHouse:
    """Read a StreamHouse topic as schema rows.

    Each row's event time is its record timestamp unless ``event_time`` says otherwise.
    Options left out take the read's defaults (``streamhouse_beam.settings``).

    Args:
      topic: the topic to read (comma-separated for several).
      metadata_url: the metadata store, sqlite:////abs/path (sqlite:///rel/path is relative,
        as in SQLAlchemy) or postgresql://...
      storage_url: the segment store, file:///dir, s3://bucket or gs://bucket (the bucket
        named is the one read; s3:// or gs:// alone reads each segment row's); omitted: s3://.
      organization_id: the organization; omitted: the store's only one.
      start: earliest, latest, offset:N, timestamp:MS or committed:GROUP; omitted: earliest.
      stop: latest, offset:N or timestamp:MS; omitted: tail the topic (end it with
        max_records or by cancelling the pipeline).
      max_records: stop after this many records.
      max_poll_records: records per read call (bundle granularity); omitted: the read's
        default unless max_poll_bytes is given.
      max_poll_bytes: key and value bytes per read call (a call ends with the row that reaches
        them; with max_poll_records, whichever comes first); omitted: no limit.
      poll_interval: seconds between polls of a caught-up partition.
      value_decoder: utf-8 (value is a string) or bytes.
      commit_offsets_group: commit consumed offsets to this consumer group.
      event_time: record_time (rows stamped with the record timestamp; the watermark is the
        largest one read) or processing_time (stamped with the time they are read; nothing
        is late).
      max_out_of_orderness_seconds: with record_time, how far the watermark stays behind the
        largest record timestamp read (0: records older than one read before them are late;
        S: Flink's bounded out-of-orderness, KafkaIO's withCreateTime(maxDelay)).
    """
    if value_decoder not in ROW_DECODERS:
        raise ValueError(
            f"value_decoder must be 'utf-8' or 'bytes' for schema rows, got {value_decoder!r}"
        )
    given: dict[str, Any] = {
        "storage_url": storage_url,
        "organization_id": organization_id,
        "start": None if start is None else StartPosition.parse(start),
        "stop": None if stop is None else StopPosition.parse(stop),
        "max_records": max_records,
        "max_poll_records": max_poll_records,
        "max_poll_bytes": max_poll_bytes,
        "poll_interval": poll_interval,
        "commit_offsets_group": commit_offsets_group,
    }
    return ReadFromStreamHouse(
        [name.strip() for name in topic.split(",") if name.strip()],
        metadata_url=metadata_url,
        value_decoder=value_decoder,
        output="rows",
        event_time=_policy(event_time, max_out_of_orderness_seconds),
        **{name: value for name, value in given.items() if value is not None},
    )
