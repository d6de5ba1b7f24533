"""Per-worker state has a lifetime: held while a DoFn uses it, evicted and closed when idle,
bounded, thread-safe, and empty in a forked child that can still read."""

from __future__ import annotations

import gc
import logging
import os
import pathlib
import random
import threading
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from apache_beam.internal import pickler

from streamhouse_beam import ReadFromStreamHouse, StartPosition, StopPosition
from streamhouse_beam import cache as cache_module
from streamhouse_beam._worker_registry import WorkerRegistry
from streamhouse_beam.beam import _worker_state as worker_state
from streamhouse_beam.beam._descriptors import PartitionDescriptor
from streamhouse_beam.beam._worker_state import RESOURCES, RUNS, RunLease, WorkerResources
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.records import TopicPartition
from tests.process_harness import Harness
from tests.read_helpers import urls, write_topic

# ------------------------------------------------------------------------------------------
# the registry
# ------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Made:
    """A registered object that knows whether it was closed and who holds it (per the test)."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.closed = 0
        self.users = 0

    def __repr__(self) -> str:
        return f"Made({self.key!r})"


class Registry:
    """A WorkerRegistry of Made objects with a fake clock, recording what it made and closed."""

    def __init__(self, idle_seconds: float = 10.0, max_idle: int = 8) -> None:
        self.clock = Clock()
        self.made: list[Made] = []
        self.closed: list[Made] = []
        self._lock = threading.Lock()
        self.registry: WorkerRegistry[str, Made] = WorkerRegistry(
            "test objects",
            self._close,
            idle_seconds=idle_seconds,
            max_idle=max_idle,
            clock=self.clock,
        )

    def make(self, key: str) -> Callable[[], Made]:
        def make() -> Made:
            made = Made(key)
            with self._lock:
                self.made.append(made)
            return made

        return make

    def _close(self, made: Made) -> None:
        assert made.users == 0, f"{made!r} was closed while in use"
        made.closed += 1
        with self._lock:
            self.closed.append(made)


def test_a_held_entry_is_never_evicted() -> None:
    r = Registry(idle_seconds=1.0, max_idle=0)
    hold = r.registry.hold("a", r.make("a"))
    r.clock.now += 1_000
    for key in "bcd":  # idle entries come and go around it
        r.registry.get(key, r.make(key))
    assert r.registry.peek("a") is hold.value
    assert hold.value.closed == 0
    # Each borrowed one went at the next operation (the peek took the last).
    assert [m.key for m in r.closed] == ["b", "c", "d"]


def test_an_entry_without_holds_is_reused_while_idle_then_closed() -> None:
    r = Registry(idle_seconds=10.0)
    first = r.registry.hold("a", r.make("a"))
    first.release()
    r.clock.now += 9.0
    again = r.registry.hold("a", r.make("a"))
    assert again.value is first.value and len(r.made) == 1
    again.release()
    r.clock.now += 10.0
    assert r.registry.peek("a") is None
    assert r.closed == [first.value] and first.value.closed == 1
    assert r.registry.hold("a", r.make("a")).value is not first.value


def test_idle_entries_beyond_the_bound_are_closed_longest_idle_first() -> None:
    r = Registry(idle_seconds=float("inf"), max_idle=2)
    holds = [r.registry.hold(k, r.make(k)) for k in "abcd"]
    for hold in holds:
        hold.release()
        r.clock.now += 1.0
    assert [m.key for m in r.closed] == ["a", "b"]
    assert len(r.registry) == 2
    assert r.registry.peek("c") is not None and r.registry.peek("d") is not None


def test_a_borrowed_entry_counts_as_idle_from_its_last_use() -> None:
    r = Registry(idle_seconds=10.0)
    made = r.registry.get("a", r.make("a"))
    assert r.registry.holds("a") == 0
    r.clock.now += 8.0
    assert r.registry.get("a", r.make("a")) is made  # used again: idle from now
    r.clock.now += 8.0
    assert r.registry.peek("a") is made
    r.clock.now += 2.0
    assert r.registry.peek("a") is None and made.closed == 1


def test_release_is_idempotent_and_counts_each_hold_once() -> None:
    r = Registry()
    one = r.registry.hold("a", r.make("a"))
    two = r.registry.hold("a", r.make("a"))
    assert r.registry.holds("a") == 2
    one.release()
    one.release()
    assert r.registry.holds("a") == 1
    with two:
        pass
    assert r.registry.holds("a") == 0 and len(r.made) == 1


def test_a_dropped_hold_is_released_by_the_garbage_collector() -> None:
    r = Registry()
    hold = r.registry.hold("a", r.make("a"))
    cycle: list[Any] = [hold]
    cycle.append(cycle)  # only the cyclic collector frees it
    del hold, cycle
    assert r.registry.holds("a") == 1
    gc.collect()
    assert r.registry.holds("a") == 0


def test_a_hold_collected_inside_an_operation_of_its_registry_does_not_deadlock() -> None:
    r = Registry()
    hold = r.registry.hold("a", r.make("a"))
    cycle: list[Any] = [hold]
    cycle.append(cycle)
    del hold, cycle

    def make_after_collecting() -> Made:
        gc.collect()  # runs the dropped hold's finalizer while the registry's lock is held
        return r.make("b")()

    b = r.registry.hold("b", make_after_collecting)
    assert r.registry.holds("a") == 0
    assert r.registry.holds("b") == 1
    b.release()


def test_a_failing_make_registers_nothing() -> None:
    r = Registry()

    def broken() -> Made:
        raise OSError("no connection")

    with pytest.raises(OSError, match="no connection"):
        r.registry.hold("a", broken)
    assert r.registry.peek("a") is None
    assert r.registry.hold("a", r.make("a")).value.key == "a"


def test_a_failing_close_is_logged_and_the_entry_still_goes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(made: object) -> None:
        raise RuntimeError("close failed")

    registry: WorkerRegistry[str, object] = WorkerRegistry(
        "refusing objects", refuse, idle_seconds=0.0, max_idle=0
    )
    with caplog.at_level(logging.WARNING):
        registry.hold("a", object).release()
    assert registry.peek("a") is None
    assert "close failed" in caplog.text


def test_invalid_limits_are_named() -> None:
    with pytest.raises(ValueError, match="idle_seconds"):
        WorkerRegistry("x", None, idle_seconds=-1.0, max_idle=1)
    with pytest.raises(ValueError, match="max_idle"):
        WorkerRegistry("x", None, idle_seconds=1.0, max_idle=-1)


@pytest.mark.parametrize("max_idle", [0, 16])
def test_concurrent_holds_never_close_an_entry_in_use(max_idle: int) -> None:
    r = Registry(idle_seconds=0.0 if max_idle == 0 else float("inf"), max_idle=max_idle)
    keys = "abcd"
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(300):
                key = rng.choice(keys)
                hold = r.registry.hold(key, r.make(key))
                hold.value.users += 1  # only while held: the closer asserts it is 0
                hold.value.users -= 1
                if rng.random() < 0.3:
                    r.registry.get(rng.choice(keys), r.make(key))
                hold.release()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert all(r.registry.holds(k) == 0 for k in keys)
    if max_idle:
        assert sorted(m.key for m in r.made) == sorted(keys)  # each made once, kept idle
        assert r.closed == []
    else:
        assert len(r.registry) == 0
        assert sorted(id(m) for m in r.made) == sorted(id(m) for m in r.closed)
        assert all(m.closed == 1 for m in r.made)


# ------------------------------------------------------------------------------------------
# the read DoFns' state
# ------------------------------------------------------------------------------------------


@pytest.fixture()
def topic(tmp_path: pathlib.Path) -> pathlib.Path:
    write_topic(tmp_path, "t", [[f"v{i}" for i in range(10)]], segment_max_records=4)
    return tmp_path


@pytest.fixture()
def evict_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs and resources go as soon as nobody holds them."""
    for registry in (RUNS, RESOURCES):
        monkeypatch.setattr(registry, "idle_seconds", 0.0)


ELEMENT = PartitionDescriptor("t", 0, StartPosition.earliest(), StopPosition.latest())


def _copy(fn: Any) -> Any:
    """The DoFn as a runner ships it to another bundle processor, set up."""
    copy = pickler.loads(pickler.dumps(fn))
    copy.setup()
    copy.start_bundle()
    return copy


def _offsets(out: list[Any]) -> list[int]:
    return [o.value.offset for o in out]


def test_a_run_s_state_goes_once_its_dofns_are_torn_down(
    topic: pathlib.Path, evict_at_once: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[WorkerResources] = []
    close = WorkerResources.close

    def noting_close(self: WorkerResources) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(WorkerResources, "close", noting_close)
    h = Harness(topic, max_poll_records=4, stop=StopPosition.latest())
    config = h.fn.config
    restriction, wm = h.start(ELEMENT)
    out, _, _, _ = h.call(ELEMENT, restriction, wm)
    assert _offsets(out) == [0, 1, 2, 3]
    other = _copy(h.fn)
    assert RUNS.holds(config.run_id) == 2
    resources = RESOURCES.peek(config.resources_key())
    assert resources is not None and RESOURCES.holds(config.resources_key()) == 2

    h.fn.teardown()
    assert RUNS.holds(config.run_id) == 1  # the other instance still reads
    assert resources not in closed  # (idle resources of earlier tests may go meanwhile)
    other.teardown()
    assert RUNS.peek(config.run_id) is None
    assert RESOURCES.peek(config.resources_key()) is None
    assert closed.count(resources) == 1


def test_a_dofn_dropped_without_teardown_gives_its_run_up(topic: pathlib.Path) -> None:
    # Beam asks a separately unpickled copy for initial restrictions and never tears it down.
    h = Harness(topic, stop=StopPosition.latest())
    provider = pickler.loads(pickler.dumps(h.fn))
    provider.initial_restriction(ELEMENT)
    run_id = h.fn.config.run_id
    assert RUNS.holds(run_id) == 2
    del provider
    gc.collect()
    assert RUNS.holds(run_id) == 1


def test_a_dofn_built_again_mid_run_finds_the_run_s_budget(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=3, max_records=5, stop=StopPosition.latest())
    restriction, wm = h.start(ELEMENT)
    out, tracker, _, _ = h.call(ELEMENT, restriction, wm)
    assert _offsets(out) == [0, 1, 2]
    residual, _ = tracker.deferred_status()
    rebuilt = _copy(h.fn)
    h.fn.teardown()  # the runner dropped the first instance (a failed bundle, an idle stage)
    h.fn = rebuilt
    out, _, _, _ = h.call(ELEMENT, residual, wm)
    assert _offsets(out) == [3, 4]  # 5 in all: the budget survived the instance
    rebuilt.teardown()


def test_runs_nobody_holds_are_bounded() -> None:
    run_ids = [os.urandom(8).hex() for _ in range(worker_state.MAX_IDLE_RUNS + 10)]
    for run_id in run_ids:
        worker_state.run_state(run_id)
    assert len(RUNS) > 0  # (settles the registry)
    idle = [key for key in list(RUNS._entries) if RUNS.holds(key) == 0]
    assert len(idle) <= worker_state.MAX_IDLE_RUNS
    assert RUNS.peek(run_ids[0]) is None and RUNS.peek(run_ids[-1]) is not None


def _commit_config(tmp: pathlib.Path) -> Any:
    return ReadFromStreamHouse("t", **urls(tmp), commit_offsets_group="g").config


def _committed(tmp: pathlib.Path) -> int | None:
    return open_metadata(f"sqlite:///{tmp}/metadata.db").committed_offset("g", "t", 0)


def test_commits_never_regress_across_eviction(topic: pathlib.Path, evict_at_once: None) -> None:
    config = _commit_config(topic)
    tp = TopicPartition("t", 0)
    lease = RunLease(config)
    first = lease.resources
    first.commit_offset("g", tp, 8)
    lease.release()
    assert RESOURCES.peek(config.resources_key()) is None  # evicted and closed

    lease = RunLease(config)
    assert lease.resources is not first  # nothing remembers the 8 in this process
    lease.resources.commit_offset("g", tp, 5)
    assert _committed(topic) == 8
    lease.resources.commit_offset("g", tp, 9)
    assert _committed(topic) == 9
    first.commit_offset("g", tp, 6)  # an evicted instance a late finalizer still holds
    assert _committed(topic) == 9
    lease.release()


class _RecordingMetadata:
    """Delegates to a metadata store and records every commit in order."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.commits: list[int] = []
        self._lock = threading.Lock()

    def commit_offsets(
        self, group: str, offsets: dict[TopicPartition, int], *, forward_only: bool = False
    ) -> None:
        self._inner.commit_offsets(group, offsets, forward_only=forward_only)
        with self._lock:
            self.commits.extend(offsets.values())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_concurrent_commits_of_a_partition_only_move_forwards(topic: pathlib.Path) -> None:
    lease = RunLease(_commit_config(topic))
    resources = lease.resources
    recording = _RecordingMetadata(resources.metadata)
    resources.metadata = recording  # type: ignore[assignment]
    tp = TopicPartition("t", 0)
    offsets = list(range(1, 61))
    random.Random(7).shuffle(offsets)
    start = threading.Barrier(6)

    def commit(share: list[int]) -> None:
        start.wait()
        for offset in share:
            resources.commit_offset("g", tp, offset)

    threads = [threading.Thread(target=commit, args=(offsets[i::6],)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert recording.commits == sorted(set(recording.commits))
    assert _committed(topic) == 60
    resources.metadata = recording._inner
    lease.release()


def test_commits_from_separate_workers_never_leave_a_lower_offset(topic: pathlib.Path) -> None:
    # Two WorkerResources share no lock and no memory of what was committed, as two worker
    # processes do; only the store's forward-only commit keeps the highest offset.
    config = _commit_config(topic)
    tp = TopicPartition("t", 0)
    workers = [WorkerResources(config) for _ in range(2)]
    rng = random.Random(11)

    def commit(start: threading.Barrier, resources: WorkerResources, offset: int) -> None:
        start.wait()
        resources.commit_offset("g", tp, offset)

    for round_ in range(20):
        base = round_ * 10
        start = threading.Barrier(2)

        # The worker with the lower offset is sometimes the one that writes last.
        pair = [base + 1, base + 2]
        rng.shuffle(pair)
        threads = [
            threading.Thread(target=commit, args=(start, w, o))
            for w, o in zip(workers, pair, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert _committed(topic) == base + 2
    for resources in workers:
        resources.close()


# ------------------------------------------------------------------------------------------
# fork
# ------------------------------------------------------------------------------------------


def _in_child(check: Callable[[], None]) -> None:
    """Run ``check`` in a forked child; fail here with the child's traceback if it fails."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            os.close(read_end)
            check()
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_empty_and_reads(topic: pathlib.Path) -> None:
    h = Harness(topic, max_poll_records=4, stop=StopPosition.latest())
    config = h.fn.config
    restriction, wm = h.start(ELEMENT)
    out, tracker, _, _ = h.call(ELEMENT, restriction, wm)
    assert _offsets(out) == [0, 1, 2, 3]
    residual, _ = tracker.deferred_status()
    parent_resources = RESOURCES.peek(config.resources_key())
    assert parent_resources is not None

    def child() -> None:
        assert len(RUNS) == 0 and len(RESOURCES) == 0
        assert len(cache_module._WORKER_CACHES) == 0
        assert h.fn._lease is not None and h.fn._lease.stale
        h.fn._lease.release()  # the parent's hold: releasing it here does nothing
        assert len(RUNS) == 0
        # The DoFn carried over reads on with fresh clients and cache ...
        out, _, _, _ = h.call(ELEMENT, residual, wm)
        assert _offsets(out) == [4, 5, 6, 7]
        assert RUNS.holds(config.run_id) == 1
        child_resources = RESOURCES.peek(config.resources_key())
        assert child_resources is not None and child_resources is not parent_resources
        assert child_resources.cache is not parent_resources.cache
        # ... and so does a new one.
        fresh = Harness(topic, max_poll_records=50, stop=StopPosition.latest())
        restriction, wm2 = fresh.start(ELEMENT)
        out, _, _, _ = fresh.call(ELEMENT, restriction, wm2)
        assert _offsets(out) == list(range(10))

    _in_child(child)
    # The parent's state is untouched by the child.
    assert RUNS.holds(config.run_id) == 1
    assert RESOURCES.peek(config.resources_key()) is parent_resources
    out, _, _, _ = h.call(ELEMENT, residual, wm)
    assert _offsets(out) == [4, 5, 6, 7]
    h.fn.teardown()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_empty_registries_of_its_own() -> None:
    r = Registry()
    parent = r.registry.hold("a", r.make("a"))

    def child() -> None:
        assert len(r.registry) == 0 and parent.stale
        parent.release()
        mine = r.registry.hold("a", r.make("a"))
        assert mine.value is not parent.value and not mine.stale
        mine.release()

    _in_child(child)
    assert r.registry.holds("a") == 1 and not parent.stale
    assert parent.value.closed == 0
    parent.release()
