"""The Apache Beam side of streamhouse-beam: the only library package that imports ``apache_beam``.

Its public names are the Beam half of :mod:`streamhouse_beam`'s face, which re-exports each
of them (import them from there): the transforms, the descriptor elements
:class:`ReadAllFromStreamHouse` reads, the event-time policy and the row and dead-letter
types. The splittable DoFn, its restriction, tracker, watermark estimator and coders are
internal and live in their modules. Importing this package registers the deterministic coders
of :class:`~streamhouse_beam.records.StreamHouseRecord` and the row types.
"""

from __future__ import annotations

from streamhouse_beam.beam.coders import DeadLetterRecord, StreamHouseRow, StreamHouseTextRow
from streamhouse_beam.beam.descriptors import PartitionDescriptor
from streamhouse_beam.beam.event_time import EventTimePolicy
from streamhouse_beam.beam.transforms import ReadAllFromStreamHouse, ReadFromStreamHouse

__all__ = [
    "DeadLetterRecord",
    "EventTimePolicy",
    "PartitionDescriptor",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
    "StreamHouseRow",
    "StreamHouseTextRow",
]
