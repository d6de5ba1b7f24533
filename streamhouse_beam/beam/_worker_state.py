"""What a worker process keeps for the read DoFns between calls, in one place, with a lifetime.

Two :class:`~streamhouse_beam._worker_registry.WorkerRegistry` instances hold it (the segment
caches are the third, in :mod:`streamhouse_beam.cache`):

* :data:`RUNS`: one :class:`RunState` per transform run (``ReadConfig.run_id``): when each
  partition last found nothing new (poll pacing), the latest read position of each partition
  (the bundle-start prefetch), and the run's ``max_records`` budget.
* :data:`RESOURCES`: one :class:`WorkerResources` per resources key: the metadata store, the
  object store and a hold on the segment cache, shared by every run with the same URLs and
  options, and the offsets committed through them.

Besides, :func:`new_retries` remembers per store instance how many retries were already
reported as metrics (weakly keyed: as long as the store lives; empty in a forked child).

A DoFn instance takes a :class:`RunLease` (a hold on both) on first use and releases it in
``teardown``; a lease its instance drops without teardown (a restriction-provider copy) is
released by the garbage collector. A run or resources nobody holds stays idle for a while
(:data:`RUN_IDLE_SECONDS`, at most :data:`MAX_IDLE_RUNS` runs; :data:`RESOURCES_IDLE_SECONDS`,
at most :data:`MAX_IDLE_RESOURCES`): runners tear DoFn instances down and build new ones
mid-run (after a failed bundle, or once a stage has been idle a minute), and the new ones
must find the budget where it was. Evicted resources are closed (clients, then the cache
hold); a user still holding a reference to them keeps working, since stores re-open their
connections on use. A forked child starts with none of it, and a DoFn instance carried into
the child takes a fresh lease at its next call.

Why not Beam's :class:`apache_beam.utils.shared.Shared`: it keeps an object exactly while
someone holds a strong reference to it (plus the one acquired last), which fits a model but
not this state: it never closes what it drops (connections, prefetch threads and spill
directories would wait for the garbage collector), never forgets a key, and hands a forked
child the parent's connections.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import weakref
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from streamhouse_beam._worker_registry import Hold, WorkerRegistry
from streamhouse_beam.cache import SegmentCache, hold_worker_cache
from streamhouse_beam.metadata import MetadataStore, open_metadata
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage import ObjectStore, open_store

if TYPE_CHECKING:
    from streamhouse_beam.beam._descriptors import ReadConfig

__all__ = [
    "MAX_IDLE_RESOURCES",
    "MAX_IDLE_RUNS",
    "RESOURCES",
    "RESOURCES_IDLE_SECONDS",
    "RUNS",
    "RUN_IDLE_SECONDS",
    "RecordBudget",
    "RunLease",
    "RunState",
    "WorkerResources",
    "new_retries",
    "run_state",
    "worker_resources",
]

#: How long a run's state outlives its last DoFn instance, and how many such runs are kept.
RUN_IDLE_SECONDS = 600.0
MAX_IDLE_RUNS = 64
#: How long resources nobody holds stay open, and how many such sets are kept.
RESOURCES_IDLE_SECONDS = 120.0
MAX_IDLE_RESOURCES = 4


class RecordBudget:
    """How many more records a transform run may emit in this process (``max_records``).

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


class RunState:
    """What one transform run remembers in a worker process between ``process()`` calls.

    Keys of the pacing methods are what the DoFn paces: a partition, or a topic's
    new-partitions element.
    """

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._empty_polls: dict[Hashable, float] = {}
        self._listings: dict[Hashable, float] = {}
        self._positions: dict[TopicPartition, int] = {}
        self._budget: RecordBudget | None = None

    def pace(self, key: Hashable, interval: float) -> None:
        """Sleep until ``interval`` has passed since ``key`` last found nothing (bounded by it).

        A caught-up restriction that a runner resumes at once (FnApiRunner ignores the
        deferral delay) waits out the poll interval here instead of polling in a loop.
        """
        with self._lock:
            last = self._empty_polls.get(key)
        if last is None:
            return
        wait = interval - (time.monotonic() - last)
        if wait > 0:
            time.sleep(min(wait, interval))

    def note_empty_poll(self, key: Hashable, empty: bool) -> None:
        """Record whether ``key``'s last poll found nothing new."""
        with self._lock:
            if empty:
                self._empty_polls[key] = time.monotonic()
            else:
                self._empty_polls.pop(key, None)

    def listing_due(self, key: Hashable, interval: float) -> bool:
        """Whether ``key`` was last listed ``interval`` ago or never; if so, it counts as listed now."""
        now = time.monotonic()
        with self._lock:
            last = self._listings.get(key)
            if last is not None and now - last < interval:
                return False
            self._listings[key] = now
            return True

    def note_position(self, tp: TopicPartition, offset: int) -> None:
        """Record the latest known read position of ``tp``."""
        with self._lock:
            self._positions[tp] = offset

    def positions(self) -> dict[TopicPartition, int]:
        """The latest known read position of each partition (a copy)."""
        with self._lock:
            return dict(self._positions)

    def budget(self, limit: int) -> RecordBudget:
        """The run's ``max_records`` budget in this process (made with ``limit`` once)."""
        with self._lock:
            if self._budget is None:
                self._budget = RecordBudget(limit)
            return self._budget

    def __repr__(self) -> str:
        return f"RunState({self.run_id!r})"


class WorkerResources:
    """The metadata store, object store and segment cache of one worker process for a config.

    Clients open lazily, on first use. :meth:`close` closes the stores and gives the cache back
    to its registry; the stores stay usable (they re-open their connections).
    """

    def __init__(self, config: ReadConfig) -> None:
        self.metadata: MetadataStore = open_metadata(
            config.metadata_url, config.organization_id, **dict(config.metadata_options)
        )
        self.store: ObjectStore = open_store(config.storage_url, dict(config.storage_options))
        self._cache_hold: Hold[SegmentCache] = hold_worker_cache(
            max_bytes=config.cache_max_bytes,
            prefetch_workers=config.prefetch_workers,
            spill_dir=config.spill_dir,
        )
        self.cache: SegmentCache = self._cache_hold.value
        self._lock = threading.Lock()
        # The highest offset committed through these resources per (group, partition), and
        # one lock per (group, partition) so a check and its commit are never interleaved.
        self._committed: dict[tuple[str, TopicPartition], int] = {}
        self._commit_locks: dict[tuple[str, TopicPartition], threading.Lock] = {}

    def commit_offset(self, group: str, tp: TopicPartition, offset: int) -> None:
        """Commit ``offset`` as ``group``'s next offset of ``tp``, never moving it backwards.

        The store applies it only above the committed offset (``forward_only``: one statement,
        so commits from other processes, or from these resources' predecessors before an
        eviction, cannot interleave a lower one). Skipped when this process already committed
        as far; commits of one partition are serialized here, so none is sent after a higher
        one.
        """
        key = (group, tp)
        with self._lock:
            if self._committed.get(key, -1) >= offset:
                return
            lock = self._commit_locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if self._committed.get(key, -1) >= offset:
                    return
            self.metadata.commit_offsets(group, {tp: offset}, forward_only=True)
            with self._lock:
                if self._committed.get(key, -1) < offset:
                    self._committed[key] = offset

    def close(self) -> None:
        """Close the stores' connections and release the cache (see the class docstring)."""
        try:
            self.metadata.close()
            self.store.close()
        finally:
            self._cache_hold.release()


def _close_resources(resources: WorkerResources) -> None:
    resources.close()


RUNS: WorkerRegistry[str, RunState] = WorkerRegistry(
    "read runs", None, idle_seconds=RUN_IDLE_SECONDS, max_idle=MAX_IDLE_RUNS
)
RESOURCES: WorkerRegistry[tuple[Any, ...], WorkerResources] = WorkerRegistry(
    "worker resources",
    _close_resources,
    idle_seconds=RESOURCES_IDLE_SECONDS,
    max_idle=MAX_IDLE_RESOURCES,
)


class RunLease:
    """One DoFn instance's hold on its run's state and on the resources of its config.

    Attributes:
        run: the run's state.
        resources: the worker's resources for the config.
        budget: the run's budget, or ``None`` without ``max_records``.
    """

    __slots__ = ("_resources_hold", "_run_hold", "budget", "resources", "run")

    def __init__(self, config: ReadConfig) -> None:
        self._run_hold = RUNS.hold(config.run_id, functools.partial(RunState, config.run_id))
        try:
            self._resources_hold = RESOURCES.hold(
                config.resources_key(), functools.partial(WorkerResources, config)
            )
        except BaseException:
            self._run_hold.release()
            raise
        self.run: RunState = self._run_hold.value
        self.resources: WorkerResources = self._resources_hold.value
        self.budget = None if config.max_records is None else self.run.budget(config.max_records)

    @property
    def stale(self) -> bool:
        """The process forked since the lease was taken: take a new one."""
        return self._run_hold.stale

    def release(self) -> None:
        """Give both up (idempotent)."""
        self._resources_hold.release()
        self._run_hold.release()


def run_state(run_id: str) -> RunState:
    """The state of run ``run_id`` in this process (borrowed: made when there is none)."""
    return RUNS.get(run_id, functools.partial(RunState, run_id))


def worker_resources(config: ReadConfig) -> WorkerResources:
    """This process's resources for ``config``, borrowed (made when there are none).

    For short uses outside a DoFn's lease (partition discovery); a DoFn takes a
    :class:`RunLease` instead.
    """
    return RESOURCES.get(config.resources_key(), functools.partial(WorkerResources, config))


# Retries already reported as metrics, per store instance (stores are shared by every DoFn
# instance of the worker, so each reports only the new ones). Weak keys: it lives as long as
# the stores do.
_reported_retries: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_reported_lock = threading.Lock()


def new_retries(store: Any) -> int:
    """Retries ``store`` made (reads, prefetches, commits) since they were last reported."""
    total = int(getattr(store, "retry_count", 0))
    with _reported_lock:
        new = total - _reported_retries.get(store, 0)
        if new > 0:
            _reported_retries[store] = total
    return max(new, 0)


def _forget_reported_retries_in_child() -> None:
    global _reported_retries, _reported_lock
    _reported_retries = weakref.WeakKeyDictionary()
    _reported_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_reported_retries_in_child)
