"""The Apache Beam side of streamhouse-beam: the only library package that imports ``apache_beam``.

Its public names are the Beam half of :mod:`streamhouse_beam`'s face, which re-exports each
of them (import them from there): the transforms, the descriptor elements
:class:`ReadAllFromStreamHouse` reads, the event-time policy and the row and dead-letter
types, and :func:`local_pipeline_args`. Its other modules are ``_``-prefixed and internal (the
splittable DoFn, its sources, poll, restriction, tracker, watermark estimator, coders and
per-worker state), except :mod:`streamhouse_beam.beam.yaml_provider`, which Beam YAML provider
files name. Importing this package registers the deterministic coders of
:class:`~streamhouse_beam.records.StreamHouseRecord` and the row types.
"""

from __future__ import annotations

from streamhouse_beam.beam._coders import DeadLetterRecord, StreamHouseRow, StreamHouseTextRow
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._event_time import EventTimePolicy
from streamhouse_beam.beam._local_runner import local_pipeline_args
from streamhouse_beam.beam._transforms import ReadAllFromStreamHouse, ReadFromStreamHouse

__all__ = [
    "DeadLetterRecord",
    "EventTimePolicy",
    "PartitionDescriptor",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
    "StreamHouseRow",
    "StreamHouseTextRow",
    "local_pipeline_args",
]
