"""The Apache Beam side of streamhouse-beam: the only package that imports ``apache_beam``.

Public names are re-exported from :mod:`streamhouse_beam`; importing this package registers the
deterministic coders of :class:`~streamhouse_beam.records.StreamHouseRecord` and the row types.
"""

from __future__ import annotations

from streamhouse_beam.beam.coders import (
    DeadLetterRecord,
    StreamHouseRecordCoder,
    StreamHouseRow,
    StreamHouseTextRow,
)
from streamhouse_beam.beam.descriptors import PartitionDescriptor
from streamhouse_beam.beam.event_time import EventTimePolicy
from streamhouse_beam.beam.read_fn import DEAD_LETTER_TAG, ReadPartitionsFn
from streamhouse_beam.beam.restriction import (
    PartitionRestriction,
    PartitionRestrictionCoder,
    PartitionRestrictionTracker,
)
from streamhouse_beam.beam.transforms import ReadAllFromStreamHouse, ReadFromStreamHouse
from streamhouse_beam.beam.watermark import (
    PartitionWatermarkEstimator,
    PartitionWatermarkEstimatorProvider,
)

__all__ = [
    "DEAD_LETTER_TAG",
    "DeadLetterRecord",
    "EventTimePolicy",
    "PartitionDescriptor",
    "PartitionRestriction",
    "PartitionRestrictionCoder",
    "PartitionRestrictionTracker",
    "PartitionWatermarkEstimator",
    "PartitionWatermarkEstimatorProvider",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
    "ReadPartitionsFn",
    "StreamHouseRecordCoder",
    "StreamHouseRow",
    "StreamHouseTextRow",
]
