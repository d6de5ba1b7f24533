"""streamhouse-beam: read StreamHouse topics in Apache Beam pipelines.

The public surface is re-exported here; everything else is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamhouse_beam.decoders import AvroDecoder, SchemaRegistryDecoder, ValueDecoder
from streamhouse_beam.errors import *  # noqa: F403
from streamhouse_beam.errors import __all__ as _error_names
from streamhouse_beam.positions import StartPosition, StopPosition
from streamhouse_beam.records import (
    PartitionInfo,
    SegmentInfo,
    StreamHouseRecord,
    TopicInfo,
    TopicPartition,
)

__version__ = "0.1.0"

# The Beam transforms import apache_beam (slow); load them on first use so the CLI's inspect
# and topics commands and Beam-free users stay fast.
_BEAM_NAMES = {
    "ReadFromStreamHouse": "streamhouse_beam.beam.transforms",
    "ReadAllFromStreamHouse": "streamhouse_beam.beam.transforms",
    "PartitionDescriptor": "streamhouse_beam.beam.descriptors",
    "DeadLetterRecord": "streamhouse_beam.beam.coders",
    "EventTimePolicy": "streamhouse_beam.beam.event_time",
    "StreamHouseRow": "streamhouse_beam.beam.coders",
}


if TYPE_CHECKING:
    from streamhouse_beam.beam.coders import DeadLetterRecord, StreamHouseRow
    from streamhouse_beam.beam.descriptors import PartitionDescriptor
    from streamhouse_beam.beam.event_time import EventTimePolicy
    from streamhouse_beam.beam.transforms import ReadAllFromStreamHouse, ReadFromStreamHouse


def __getattr__(name: str) -> object:
    module = _BEAM_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'streamhouse_beam' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "AvroDecoder",
    "DeadLetterRecord",
    "EventTimePolicy",
    "PartitionDescriptor",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
    "SchemaRegistryDecoder",
    "StartPosition",
    "StopPosition",
    "StreamHouseRow",
    "ValueDecoder",
    "PartitionInfo",
    "SegmentInfo",
    "StreamHouseRecord",
    "TopicInfo",
    "TopicPartition",
    "__version__",
    *_error_names,
]
