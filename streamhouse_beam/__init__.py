"""streamhouse-beam: read StreamHouse topics in Apache Beam pipelines.

The public surface is re-exported here; everything else is internal.
"""

from __future__ import annotations

from streamhouse_beam.errors import *  # noqa: F403
from streamhouse_beam.errors import __all__ as _error_names
from streamhouse_beam.records import (
    PartitionInfo,
    SegmentInfo,
    StreamHouseRecord,
    TopicInfo,
    TopicPartition,
)

__version__ = "0.1.0"

__all__ = [
    "PartitionInfo",
    "SegmentInfo",
    "StreamHouseRecord",
    "TopicInfo",
    "TopicPartition",
    "__version__",
    *_error_names,
]
