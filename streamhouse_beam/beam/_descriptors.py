"""What the read DoFns are configured with and what flows between them.

* :class:`PartitionDescriptor` — one partition to read and its start/stop policy: the element
  of the splittable read DoFn (and of :class:`~streamhouse_beam.ReadAllFromStreamHouse`).
* :class:`ReadConfig` — everything a worker needs to read (URLs, reader and cache options,
  decoding, output kind, commits); frozen and picklable, never holding a client. What a worker
  builds from it (clients, cache, budget) is in :mod:`streamhouse_beam.beam._worker_state`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from streamhouse_beam.beam._event_time import EventTimePolicy
from streamhouse_beam.decoders import ValueDecoder
from streamhouse_beam.errors import redact
from streamhouse_beam.partition_reader import ReadOptions
from streamhouse_beam.positions import StartPosition, StopPosition
from streamhouse_beam.records import TopicPartition

__all__ = [
    "PartitionDescriptor",
    "ReadConfig",
    "as_descriptor",
]


@dataclasses.dataclass(frozen=True)
class PartitionDescriptor:
    """One partition to read, with its start and stop policies.

    Attributes:
        topic: topic name.
        partition: partition number.
        start: where to start; resolved on the worker when the read is planned.
        stop: where to stop (exclusive); ``None`` tails the partition.
    """

    topic: str
    partition: int
    start: StartPosition = StartPosition.earliest()  # noqa: RUF009 - frozen value
    stop: StopPosition | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise ValueError(f"topic must be a non-empty str, got {self.topic!r}")
        if isinstance(self.partition, bool) or not isinstance(self.partition, int):
            raise TypeError(f"partition must be an int, got {self.partition!r}")
        if self.partition < 0:
            raise ValueError(f"partition must be >= 0, got {self.partition}")
        if not isinstance(self.start, StartPosition):
            raise TypeError(f"start must be a StartPosition, got {type(self.start).__name__}")
        if self.stop is not None and not isinstance(self.stop, StopPosition):
            raise TypeError(f"stop must be a StopPosition or None, got {type(self.stop).__name__}")

    @property
    def topic_partition(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}"


def as_descriptor(
    element: object, start: StartPosition, stop: StopPosition | None
) -> PartitionDescriptor:
    """Normalize a ReadAll input: a descriptor, a TopicPartition or a ``(topic, partition)``."""
    if isinstance(element, PartitionDescriptor):
        return element
    if (
        isinstance(element, tuple)
        and len(element) == 2
        and isinstance(element[0], str)
        and isinstance(element[1], int)
    ):
        return PartitionDescriptor(element[0], element[1], start, stop)
    raise TypeError(
        "ReadAllFromStreamHouse elements must be PartitionDescriptor, TopicPartition or "
        f"(topic, partition) tuples, got {type(element).__name__} {element!r}"
    )


@dataclasses.dataclass(frozen=True)
class ReadConfig:
    """Everything the read DoFns need, as plain attributes read on every poll.

    Built by the transforms from their :class:`~streamhouse_beam.settings.ReadSettings`, which
    state the defaults and check the values; this holds the resolved values (the poll limits
    of the output kind, the decoder, the event-time policy) and no defaults of its own.
    """

    metadata_url: str
    storage_url: str
    organization_id: str | None
    storage_options: tuple[tuple[str, Any], ...]
    metadata_options: tuple[tuple[str, Any], ...]
    read_options: ReadOptions
    cache_max_bytes: int
    prefetch_workers: int
    spill_dir: str | None
    #: Records per poll; ``None``: no record limit (``max_poll_bytes`` is then set).
    max_poll_records: int | None
    max_poll_seconds: float
    poll_interval: float
    max_delay_seconds: float
    partition_discovery_interval: float
    decoder: ValueDecoder
    output: str
    dead_letter: bool
    commit_offsets_group: str | None
    max_records: int | None
    run_id: str
    event_time: EventTimePolicy
    #: Key and value bytes per poll; ``None``: no byte limit.
    max_poll_bytes: int | None

    def resources_key(self) -> tuple[Any, ...]:
        return (
            self.metadata_url,
            self.organization_id,
            self.metadata_options,
            self.storage_url,
            self.storage_options,
            self.cache_max_bytes,
            self.prefetch_workers,
            self.spill_dir,
        )

    def display(self) -> dict[str, str]:
        """Configuration safe to show (URLs redacted, storage options by name only)."""
        return {
            "metadata_url": redact(self.metadata_url),
            "storage_url": redact(self.storage_url),
            "organization_id": self.organization_id or "(the store's only organization)",
            "storage_options": ", ".join(k for k, _ in self.storage_options) or "(none)",
        }

    def __repr__(self) -> str:
        # The generated dataclass repr would print storage option values (credentials) and the
        # metadata URL's password into tracebacks and logs; show what display() shows.
        shown = ", ".join(f"{k}={v!r}" for k, v in self.display().items())
        return f"ReadConfig({shown}, run_id={self.run_id!r})"
