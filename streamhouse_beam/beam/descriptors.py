"""What the read DoFns are configured with and what flows between them.

* :class:`PartitionDescriptor` — one partition to read and its start/stop policy: the element
  of the splittable read DoFn (and of :class:`~streamhouse_beam.ReadAllFromStreamHouse`).
* :class:`ReadConfig` — everything a worker needs to read (URLs, reader and cache options,
  decoding, output kind, commits); frozen and picklable, never holding a client.
* :class:`WorkerResources` — the per-process metadata store, object store and segment cache
  built from a config, shared by every DoFn instance and thread of the worker.
* :class:`RecordBudget` — the process-wide ``max_records`` counter of one transform instance.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from typing import Any

from streamhouse_beam.beam.event_time import EventTimePolicy
from streamhouse_beam.cache import SegmentCache, get_worker_cache
from streamhouse_beam.decoders import ValueDecoder
from streamhouse_beam.errors import redact
from streamhouse_beam.metadata import MetadataStore, open_metadata
from streamhouse_beam.partition_reader import ReadOptions
from streamhouse_beam.positions import StartPosition, StopPosition
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage import ObjectStore, open_store

__all__ = [
    "PartitionDescriptor",
    "ReadConfig",
    "RecordBudget",
    "WorkerResources",
    "as_descriptor",
    "budget_for",
    "worker_resources",
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
    """Everything the read DoFns need; built and validated by the transforms."""

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
    event_time: EventTimePolicy = EventTimePolicy.record_time()  # noqa: RUF009 - frozen value
    #: Key and value bytes per poll; ``None``: no byte limit.
    max_poll_bytes: int | None = None

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


class WorkerResources:
    """The metadata store, object store and segment cache of one worker process."""

    def __init__(self, config: ReadConfig) -> None:
        self.metadata: MetadataStore = open_metadata(
            config.metadata_url, config.organization_id, **dict(config.metadata_options)
        )
        self.store: ObjectStore = open_store(config.storage_url, dict(config.storage_options))
        self.cache: SegmentCache = get_worker_cache(
            max_bytes=config.cache_max_bytes,
            prefetch_workers=config.prefetch_workers,
            spill_dir=config.spill_dir,
        )


_RESOURCES: dict[tuple[Any, ...], WorkerResources] = {}
_RESOURCES_LOCK = threading.Lock()


def worker_resources(config: ReadConfig) -> WorkerResources:
    """This process's shared resources for ``config`` (created once; clients open lazily)."""
    key = config.resources_key()
    with _RESOURCES_LOCK:
        found = _RESOURCES.get(key)
        if found is None:
            found = _RESOURCES[key] = WorkerResources(config)
        return found


class RecordBudget:
    """How many more records a transform instance may emit in this process (``max_records``).

    Beam has no cross-worker counter, so the budget is per process: on a single-process runner
    (FnApiRunner, the CLI) the pipeline emits exactly ``max_records`` records (or all there are);
    with ``W`` worker processes it emits at most ``W * max_records``.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    def take(self, wanted: int) -> int:
        """Reserve up to ``wanted`` records; returns how many were granted."""
        with self._lock:
            granted = max(0, min(wanted, self.limit - self._used))
            self._used += granted
            return granted

    def give_back(self, unused: int) -> None:
        """Return records reserved but not emitted (a split took them)."""
        if unused > 0:
            with self._lock:
                self._used -= unused

    @property
    def exhausted(self) -> bool:
        with self._lock:
            return self._used >= self.limit


_BUDGETS: dict[str, RecordBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def budget_for(config: ReadConfig) -> RecordBudget | None:
    """The process-wide budget of the transform instance ``config`` belongs to."""
    if config.max_records is None:
        return None
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(config.run_id)
        if budget is None:
            budget = _BUDGETS[config.run_id] = RecordBudget(config.max_records)
        return budget


def options_tuple(name: str, options: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """Validate a mapping argument and freeze it (sorted items) so configs hash and compare."""
    if options is None:
        return ()
    if not isinstance(options, Mapping):
        raise TypeError(f"{name} must be a mapping, got {type(options).__name__}")
    for key in options:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, got {key!r}")
    return tuple(sorted(options.items()))
