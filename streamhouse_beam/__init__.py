"""streamhouse-beam: read StreamHouse topics in Apache Beam pipelines.

This module is the public face: what a pipeline author uses, listed in ``__all__``.

- the transforms :class:`ReadFromStreamHouse` and :class:`ReadAllFromStreamHouse`, and the
  :class:`PartitionDescriptor` elements the latter reads;
- where to start and stop: :class:`StartPosition`, :class:`StopPosition`;
- how elements are timestamped and watermarked: :class:`EventTimePolicy`;
- what comes out: :class:`StreamHouseRecord` (with its :class:`TopicPartition`),
  :class:`StreamHouseRow` / :class:`StreamHouseTextRow` (``output="rows"``) and
  :class:`DeadLetterRecord` (``dead_letter=True``);
- value decoders beyond the named ones (``"bytes"``, ``"utf-8"``, ``"json"``):
  :class:`ValueDecoder` to subclass, :class:`AvroDecoder`, :class:`SchemaRegistryDecoder`;
- the errors worth catching: the base :class:`StreamHouseError`, one class per family
  (segment, storage, metadata) and the ones a pipeline can act on. The finer classes of the
  tree stay in :mod:`streamhouse_beam.errors`, whose docstring draws all of it.

Everything else (the stores, the segment codec, the DoFn, restrictions, coders, the CLI) is
internal and may change without notice. The Beam names load ``apache_beam`` on first use, so
``import streamhouse_beam`` stays fast for the CLI and Beam-free code.
"""

from __future__ import annotations

import typing as _typing
from importlib import metadata as _metadata

from streamhouse_beam.decoders import AvroDecoder, SchemaRegistryDecoder, ValueDecoder
from streamhouse_beam.errors import (
    CorruptSegmentError,
    DataLossError,
    DecodeError,
    EventTimeError,
    MetadataError,
    MetadataUnavailableError,
    MissingExtraError,
    NoCommittedOffsetError,
    NotAStreamHouseStoreError,
    ObjectNotFoundError,
    OrganizationError,
    SchemaRegistryError,
    SegmentError,
    StorageError,
    StoragePermissionError,
    StorageRootNotFoundError,
    StreamHouseError,
    TopicNotFoundError,
    TransientStorageError,
    UnsupportedOnRunnerError,
)
from streamhouse_beam.positions import StartPosition, StopPosition
from streamhouse_beam.records import StreamHouseRecord, TopicPartition

#: The version reported when the package runs from a source tree that was never installed.
_UNKNOWN_VERSION = "0+unknown"


def _installed_version() -> str:
    """The installed distribution's version (pyproject.toml is its only source)."""
    try:
        return _metadata.version("streamhouse-beam")
    except _metadata.PackageNotFoundError:
        return _UNKNOWN_VERSION


__version__ = _installed_version()

# The Beam side imports apache_beam (slow): loaded on first use.
_BEAM_NAMES = frozenset(
    {
        "DeadLetterRecord",
        "EventTimePolicy",
        "PartitionDescriptor",
        "ReadAllFromStreamHouse",
        "ReadFromStreamHouse",
        "StreamHouseRow",
        "StreamHouseTextRow",
    }
)

if _typing.TYPE_CHECKING:
    from streamhouse_beam.beam import (
        DeadLetterRecord,
        EventTimePolicy,
        PartitionDescriptor,
        ReadAllFromStreamHouse,
        ReadFromStreamHouse,
        StreamHouseRow,
        StreamHouseTextRow,
    )


def __getattr__(name: str) -> object:
    if name not in _BEAM_NAMES:
        raise AttributeError(f"module 'streamhouse_beam' has no attribute {name!r}")
    import streamhouse_beam.beam

    return getattr(streamhouse_beam.beam, name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | _BEAM_NAMES)


# Grouped by purpose in the module docstring; kept sorted here.
__all__ = [
    "AvroDecoder",
    "CorruptSegmentError",
    "DataLossError",
    "DeadLetterRecord",
    "DecodeError",
    "EventTimeError",
    "EventTimePolicy",
    "MetadataError",
    "MetadataUnavailableError",
    "MissingExtraError",
    "NoCommittedOffsetError",
    "NotAStreamHouseStoreError",
    "ObjectNotFoundError",
    "OrganizationError",
    "PartitionDescriptor",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
    "SchemaRegistryDecoder",
    "SchemaRegistryError",
    "SegmentError",
    "StartPosition",
    "StopPosition",
    "StorageError",
    "StoragePermissionError",
    "StorageRootNotFoundError",
    "StreamHouseError",
    "StreamHouseRecord",
    "StreamHouseRow",
    "StreamHouseTextRow",
    "TopicNotFoundError",
    "TopicPartition",
    "TransientStorageError",
    "UnsupportedOnRunnerError",
    "ValueDecoder",
    "__version__",
]
