"""Per-process registries of shared objects, each entry with a lifetime.

A worker process shares costly objects (metadata and object-store clients, the segment cache,
a read's budget) between every DoFn instance and thread. A :class:`WorkerRegistry` makes each
one on first use, under a key, and decides when it goes:

* **Holds.** :meth:`WorkerRegistry.hold` returns a :class:`Hold`; an entry with a hold is
  never evicted. A hold is released by :meth:`Hold.release` (a DoFn's ``teardown``), or by the
  garbage collector when its owner is dropped without one. That release is queued without
  taking a lock (the collector may run inside an operation of the same registry, on the same
  thread) and applied at the registry's next operation.
* **Idle entries.** An entry without holds (its last hold released, or only ever borrowed
  with :meth:`WorkerRegistry.get`) is kept ``idle_seconds`` for its next user, since runners
  tear DoFn instances down and build new ones as they please. Then it is closed and dropped;
  beyond ``max_idle`` idle entries the longest idle go at once. Expiry is checked at each
  operation of the registry; there is no thread.
* **Fork.** A forked child starts with every registry empty. The entries it inherited are
  dropped without being closed (their connections and threads belong to the parent), and
  holds taken before the fork are :attr:`~Hold.stale`: releasing them does nothing.

Every operation is thread-safe. Entries are made under the registry's lock (one per key);
they are closed outside it, and an error while closing is logged, not raised.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

__all__ = ["Hold", "WorkerRegistry"]

_LOG = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Bumped in a forked child: holds taken under an older generation belong to the parent.
_generation = 0
_registries: weakref.WeakSet[WorkerRegistry[Any, Any]] = weakref.WeakSet()


def _forget_everything_in_child() -> None:
    global _generation
    _generation += 1
    for registry in list(_registries):
        registry._forget()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_everything_in_child)


class _Entry(Generic[V]):
    """One registered object. Mutated only under its registry's lock."""

    __slots__ = ("holds", "idle_since", "value")

    def __init__(self, value: V) -> None:
        self.value = value
        self.holds = 0
        self.idle_since = 0.0


class Hold(Generic[V]):
    """A user's claim on a registry entry: the entry stays while the hold is not released.

    Release it exactly once with :meth:`release` (further calls are no-ops), or let the garbage
    collector release it with its owner.

    Attributes:
        value: the registered object.
    """

    __slots__ = ("__weakref__", "_entry", "_finalizer", "_generation", "_key", "_registry", "value")

    def __init__(self, registry: WorkerRegistry[K, V], key: K, entry: _Entry[V]) -> None:
        self.value = entry.value
        self._registry = registry
        self._key = key
        self._entry = entry
        self._generation = _generation
        # The finalizer must not refer to the hold itself, or the hold would never be collected.
        self._finalizer = weakref.finalize(
            self, registry._release_later, key, entry, self._generation
        )
        self._finalizer.atexit = False

    @property
    def stale(self) -> bool:
        """The process forked since the hold was taken: its value belongs to the parent."""
        return self._generation != _generation

    def release(self) -> None:
        """Give the entry up; once no hold is left, it is idle."""
        if self._finalizer.detach() is not None:
            self._registry._release(self._key, self._entry, self._generation)

    def __enter__(self) -> Hold[V]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if not self._finalizer.alive else "stale" if self.stale else "held"
        return f"Hold({self.value!r}, {state})"


class WorkerRegistry(Generic[K, V]):
    """Objects shared by the whole process, made on first use and closed when evicted.

    Args:
        name: what the registry holds, for logs and reprs.
        close: called with each evicted object (outside the lock); ``None``: nothing to close.
        idle_seconds: how long an entry without holds is kept.
        max_idle: how many entries without holds are kept at most.
        clock: the monotonic clock idle time is measured with.

    Raises:
        ValueError: a negative ``idle_seconds`` or ``max_idle``.
    """

    def __init__(
        self,
        name: str,
        close: Callable[[V], object] | None,
        *,
        idle_seconds: float,
        max_idle: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not idle_seconds >= 0:
            raise ValueError(f"idle_seconds must be >= 0, got {idle_seconds!r}")
        if not isinstance(max_idle, int) or max_idle < 0:
            raise ValueError(f"max_idle must be an int >= 0, got {max_idle!r}")
        self.name = name
        self.idle_seconds = idle_seconds
        self.max_idle = max_idle
        self._closer = close
        self._clock = clock
        self._forget()
        _registries.add(self)

    def _forget(self) -> None:
        """Start empty (at construction, and in a forked child: nothing is closed)."""
        self._lock = threading.Lock()
        self._entries: dict[K, _Entry[V]] = {}
        # Keys of the entries without holds, longest idle first.
        self._idle: collections.OrderedDict[K, None] = collections.OrderedDict()
        # Holds the garbage collector released; applied at the next operation.
        self._released: collections.deque[tuple[K, _Entry[V]]] = collections.deque()

    # ------------------------------------------------------------------------------ public

    def hold(self, key: K, make: Callable[[], V]) -> Hold[V]:
        """Hold the entry for ``key``, made with ``make()`` if there is none.

        Raises:
            Whatever ``make`` raises; nothing is registered then.
        """
        closing: list[V] = []
        try:
            with self._lock:
                closing = self._settle_locked()
                entry = self._entry_locked(key, make)
                entry.holds += 1
                self._idle.pop(key, None)
        finally:
            self._close(closing)
        return Hold(self, key, entry)

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The object for ``key``, made with ``make()`` if there is none, without a hold.

        A borrowed entry that nobody holds counts as just used: it is kept ``idle_seconds``
        from now.
        """
        closing: list[V] = []
        try:
            with self._lock:
                closing = self._settle_locked()
                entry = self._entry_locked(key, make)
                if entry.holds == 0:
                    entry.idle_since = self._clock()
                    self._idle[key] = None
                    self._idle.move_to_end(key)
        finally:
            self._close(closing)
        return entry.value

    def peek(self, key: K) -> V | None:
        """The object for ``key`` if there is one (nothing is made or touched)."""
        with self._lock:
            closing = self._settle_locked()
            entry = self._entries.get(key)
        self._close(closing)
        return None if entry is None else entry.value

    def holds(self, key: K) -> int:
        """How many holds the entry for ``key`` has (0 when idle or absent)."""
        with self._lock:
            closing = self._settle_locked()
            entry = self._entries.get(key)
        self._close(closing)
        return 0 if entry is None else entry.holds

    def __len__(self) -> int:
        with self._lock:
            closing = self._settle_locked()
            size = len(self._entries)
        self._close(closing)
        return size

    def __repr__(self) -> str:
        return (
            f"WorkerRegistry({self.name!r}, idle_seconds={self.idle_seconds}, "
            f"max_idle={self.max_idle})"
        )

    # ------------------------------------------------------------------------------ internals

    def _entry_locked(self, key: K, make: Callable[[], V]) -> _Entry[V]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(make())
        return entry

    def _drop_hold_locked(self, key: K, entry: _Entry[V]) -> None:
        if self._entries.get(key) is not entry:
            return  # cannot happen while held; kept so a stray release never miscounts
        entry.holds -= 1
        if entry.holds == 0:
            entry.idle_since = self._clock()
            self._idle[key] = None

    def _settle_locked(self) -> list[V]:
        """Apply queued releases, then evict what has been idle too long or too many; returns
        the evicted objects (to close outside the lock)."""
        while self._released:
            key, entry = self._released.popleft()
            self._drop_hold_locked(key, entry)
        evicted: list[V] = []
        if not self._idle:
            return evicted
        now = self._clock()
        while self._idle:
            key = next(iter(self._idle))
            entry = self._entries[key]
            if len(self._idle) <= self.max_idle and now - entry.idle_since < self.idle_seconds:
                break
            del self._idle[key]
            del self._entries[key]
            evicted.append(entry.value)
        return evicted

    def _release(self, key: K, entry: _Entry[V], generation: int) -> None:
        if generation != _generation:
            return  # a hold the parent took before this process forked
        with self._lock:
            self._drop_hold_locked(key, entry)
            closing = self._settle_locked()
        self._close(closing)

    def _release_later(self, key: K, entry: _Entry[V], generation: int) -> None:
        # The garbage collector's release: no lock here (see the module docstring).
        if generation == _generation:
            self._released.append((key, entry))

    def _close(self, values: list[V]) -> None:
        if self._closer is None:
            return
        for value in values:
            try:
                self._closer(value)
            except Exception as exc:
                _LOG.warning("closing %r evicted from the %s failed: %s", value, self.name, exc)
