"""The read stage's two kinds of element, each with a source; what a source uses of the DoFn.

The splittable read DoFn (:mod:`streamhouse_beam.beam._read_fn`) takes two kinds of element:

* a :class:`~streamhouse_beam.beam._descriptors.PartitionDescriptor`: one partition, read over
  a :class:`~streamhouse_beam.beam._restriction.PartitionRestriction` (an offset range) by
  :class:`~streamhouse_beam.beam._partitions.PartitionSource`;
* a :class:`~streamhouse_beam.beam._discovery.NewPartitionsDescriptor`: the partitions of a
  topic created while a tailing read runs, found and read over a
  :class:`~streamhouse_beam.beam._discovery.NewPartitionsRestriction` by
  :class:`~streamhouse_beam.beam._discovery.NewPartitionsSource`.

Both kinds are elements of the one DoFn because discovery must run in the read's stage: a
runner such as FnApiRunner runs a stage only once its upstream stages have finished, and an
upstream stage that watches a topic for new partitions never finishes, so the read would
never start. Each restriction-provider hook and ``process()`` of the DoFn hands the element
(or restriction) to its :class:`Source`, chosen once per hook; a source owns its restriction
type, tracker, size, drain and poll loop. What a source needs of the DoFn that runs it (the
worker's readers and resources, the record budget, a poll, and the book-keeping kept between
``process()`` calls) is the :class:`Worker` interface, which the DoFn implements.
"""

from __future__ import annotations

import abc
from collections.abc import Hashable, Iterator
from typing import Any, Protocol

from apache_beam.io.iobase import RestrictionTracker

from streamhouse_beam.beam._descriptors import ReadConfig
from streamhouse_beam.beam._poll import Cursor, Poll
from streamhouse_beam.beam._worker_state import RecordBudget, WorkerResources
from streamhouse_beam.partition_reader import PartitionReader
from streamhouse_beam.records import TopicPartition

__all__ = ["Source", "Worker"]


class Worker(Protocol):
    """What a :class:`Source` uses of the read DoFn that runs it, on one worker."""

    config: ReadConfig

    def resources(self) -> WorkerResources:
        """The worker's metadata store, object store and segment cache."""
        ...

    def budget(self) -> RecordBudget | None:
        """The transform's record budget in this process (``max_records``), or None."""
        ...

    def reader(self, tp: TopicPartition) -> PartitionReader:
        """This DoFn instance's reader of ``tp``."""
        ...

    def new_reader(self, tp: TopicPartition) -> PartitionReader:
        """A reader of ``tp`` that the caller owns (and closes)."""
        ...

    def poll(self, tracker: Any, watermark_estimator: Any) -> Poll:
        """A :class:`Poll` for one ``process()`` call."""
        ...

    def prefetch_bundle(self, tp: TopicPartition) -> None:
        """At a bundle's first call: prefetch the other known partitions' first segments."""
        ...

    def pace(self, key: tuple[str, Hashable]) -> None:
        """Wait out the poll interval when ``key``'s previous poll found nothing."""
        ...

    def note_caught_up(self, key: tuple[str, Hashable], caught_up: bool) -> None:
        """Remember whether ``key``'s poll found nothing new (for :meth:`pace`)."""
        ...

    def listing_due(self, topic: str) -> bool:
        """Whether ``topic``'s partitions are due to be listed again; if so, note it now."""
        ...

    def note_position(self, tp: TopicPartition, offset: int) -> None:
        """Remember where ``tp`` is read from (for :meth:`prefetch_bundle`)."""
        ...

    def note_progress(self, cursor: Cursor, bundle_finalizer: Any) -> None:
        """After a partition's poll: its position, backlog gauge and offset commit."""
        ...


class Source(abc.ABC):
    """Reads one kind of element; the DoFn hands it the hooks of its elements.

    Args:
        worker: the DoFn that runs the source.
    """

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    @abc.abstractmethod
    def initial_restriction(self, element: Any) -> Any:
        """The restriction of a new element."""

    @abc.abstractmethod
    def create_tracker(self, restriction: Any) -> RestrictionTracker:
        """The tracker of ``restriction``."""

    @abc.abstractmethod
    def restriction_size(self, element: Any, restriction: Any) -> float:
        """The restriction's remaining work, cheap to compute (runners call it often)."""

    @abc.abstractmethod
    def truncate(self, element: Any, restriction: Any) -> Any:
        """What is left of the restriction when the pipeline drains (None: nothing)."""

    @abc.abstractmethod
    def process(
        self, element: Any, bundle_finalizer: Any, tracker: Any, watermark_estimator: Any
    ) -> Iterator[Any]:
        """One ``process()`` call; ``bundle_finalizer`` is None unless offsets are committed."""
