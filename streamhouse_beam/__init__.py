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
  tree stay in :mod:`streamhouse_beam.errors`, whose docstring draws all of it;
- running a pipeline on this machine's cached Prism without network access:
  :func:`local_pipeline_args`.

The Beam names load ``apache_beam`` on first use, so ``import streamhouse_beam`` stays fast
for the CLI and Beam-free code.

Module names follow one rule: a module whose name starts with ``_`` is internal to its
package and may change without notice. Unprefixed modules are one of

- a face: this package, :mod:`streamhouse_beam.beam` (its Beam half),
  :mod:`streamhouse_beam.beam.yaml_provider` (named by Beam YAML provider files),
  :mod:`streamhouse_beam.errors`, :mod:`streamhouse_beam.testing` (test helpers) and
  :mod:`streamhouse_beam.cli` (the ``streamhouse-beam`` command);
- a Beam-free layer the read is built on, usable on its own and listing its names in
  ``__all__``: :mod:`~streamhouse_beam.segment` (the codec), :mod:`~streamhouse_beam.storage`
  and :mod:`~streamhouse_beam.metadata` (the stores, chosen by URL),
  :mod:`~streamhouse_beam.cache`, :mod:`~streamhouse_beam.partition_reader`,
  :mod:`~streamhouse_beam.decoders`, :mod:`~streamhouse_beam.positions`,
  :mod:`~streamhouse_beam.records` and :mod:`~streamhouse_beam.settings`.

Everything that runs the read inside Beam (the splittable DoFn, its sources, poll,
restrictions, watermarks, coders and per-worker state) is ``_``-prefixed under
:mod:`streamhouse_beam.beam`. ``tests/test_public_api.py`` holds both lists.
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
        "local_pipeline_args",
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
        local_pipeline_args,
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
    "local_pipeline_args",
]
