"""An ObjectStore wrapper that injects object-store faults in-process, for reliability tests.

:class:`FaultyStore` wraps any store and behaves like a network backend whose wire is bad:

* **transient faults** (``"500"``, ``"503"``, ``"reset"``, ``"timeout"``) fail one attempt of
  a read; the wrapper retries them exactly as the S3 and GCS backends do
  (:func:`streamhouse_beam._retry.call_with_retry`, exponential backoff), counts each
  retry in :attr:`FaultyStore.retry_count` / :meth:`FaultyStore.stats`, and raises
  :class:`~streamhouse_beam.errors.TransientStorageError` once the budget is spent;
* **silent data faults** (``"truncate"``, ``"corrupt"``) return an answer that looks
  successful but is cut short or has one byte flipped — what a reader must catch with the
  segment's length checks and CRC, never decode as data;
* **scripted faults**: :meth:`FaultyStore.corrupt_next` / :meth:`FaultyStore.truncate_next` /
  :meth:`FaultyStore.fail_next` hit the next reads of one key, and
  :meth:`FaultyStore.delete_when_read` deletes an object (as an operator would) when another
  one is read, so a segment disappears in the middle of a partition read.

Random faults are drawn from ``random.Random(seed)`` once per attempt in call order. The
fault plan, the counters and the random sequence live in a process-wide registry keyed by
the wrapper's id, so the copies Beam makes by pickling a DoFn inside one process (FnApiRunner)
share them and a test can read :meth:`FaultyStore.stats` after the pipeline ran.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import random
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar

from streamhouse_beam._retry import (
    RetryableFailure,
    RetryCounter,
    RetryPolicy,
    call_with_retry,
    storage_give_up,
)
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing._shared import WrappedStore, check_faults

__all__ = ["DATA_FAULTS", "FAULTS", "TRANSIENT_FAULTS", "FaultyStore"]

T = TypeVar("T")

#: Faults that fail one attempt and are retried.
TRANSIENT_FAULTS = ("500", "503", "reset", "timeout")
#: Faults that return damaged bytes as if the read succeeded.
DATA_FAULTS = ("truncate", "corrupt")
#: Every fault kind.
FAULTS = TRANSIENT_FAULTS + DATA_FAULTS

_REASONS = {
    "500": "HTTP 500 InternalError (injected)",
    "503": "HTTP 503 SlowDown (injected)",
    "reset": "connection reset by peer (injected)",
    "timeout": "read timed out (injected)",
}

_IDS = itertools.count(1)


@dataclasses.dataclass
class _Plan:
    """Shared mutable state of one FaultyStore and all its pickled copies in this process."""

    rng: random.Random
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    retries: RetryCounter = dataclasses.field(default_factory=RetryCounter)
    injected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    reads: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    scripted: dict[str, collections.deque[str]] = dataclasses.field(default_factory=dict)
    deletions: dict[str, list[tuple[str, str | None]]] = dataclasses.field(default_factory=dict)
    deleted: list[str] = dataclasses.field(default_factory=list)


_PLANS: dict[int, _Plan] = {}
_PLANS_LOCK = threading.Lock()


class FaultyStore(WrappedStore):
    """Wrap ``inner`` and inject faults into its reads.

    Args:
        inner: the real store (memory, file, S3, ...); writes and deletes pass straight through.
        failure_rate: share of read attempts that get a random fault, in ``[0, 1]``.
        faults: kinds the random faults are drawn from (a subset of :data:`FAULTS`).
        seed: seed of the random fault sequence.
        retry_policy: attempts and backoff for transient faults (default: 8 attempts, no
            sleeping, so tests stay fast; a 30% fault rate then fails a read with p ~ 6e-5).

    Raises:
        ValueError: ``failure_rate`` is out of range or ``faults`` names an unknown kind.
    """

    def __init__(
        self,
        inner: ObjectStore,
        *,
        failure_rate: float = 0.0,
        faults: Iterable[str] = TRANSIENT_FAULTS,
        seed: int = 0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(inner, ObjectStore):
            raise TypeError(f"inner must be an ObjectStore, got {type(inner).__name__}")
        self.faults = check_faults(failure_rate, faults, FAULTS)
        super().__init__(inner)
        self.failure_rate = float(failure_rate)
        self.retry_policy = retry_policy or RetryPolicy(attempts=8, base_delay=0.0, max_delay=0.0)
        self._plan_id = next(_IDS)
        with _PLANS_LOCK:
            _PLANS[self._plan_id] = _Plan(rng=random.Random(seed))

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r}, failure_rate={self.failure_rate})"

    @property
    def _plan(self) -> _Plan:
        with _PLANS_LOCK:
            plan = _PLANS.get(self._plan_id)
            if plan is None:
                # Unpickled in another process: start an empty plan of its own there.
                plan = _PLANS[self._plan_id] = _Plan(rng=random.Random(self._plan_id))
            return plan

    # ----------------------------------------------------------------------------------------
    # Scripting and counters
    # ----------------------------------------------------------------------------------------

    def fail_next(self, key: str, times: int = 1, fault: str = "503") -> None:
        """Make the next ``times`` read attempts of ``key`` fail with ``fault`` (any kind)."""
        self._script(key, fault, times)

    def corrupt_next(self, key: str, times: int = 1) -> None:
        """Flip one byte in the next ``times`` reads of ``key``."""
        self._script(key, "corrupt", times)

    def truncate_next(self, key: str, times: int = 1) -> None:
        """Cut the next ``times`` reads of ``key`` to half their length."""
        self._script(key, "truncate", times)

    def _script(self, key: str, fault: str, times: int) -> None:
        if fault not in FAULTS:
            raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
        if times < 0:
            raise ValueError(f"times must be >= 0, got {times!r}")
        plan = self._plan
        with plan.lock:
            plan.scripted.setdefault(key, collections.deque()).extend([fault] * times)

    def delete_when_read(
        self, trigger_key: str, victim_key: str, *, bucket: str | None = None
    ) -> None:
        """Delete ``victim_key`` from the inner store right after ``trigger_key`` is first read.

        This is an operator deleting a segment while a reader is working through the
        partition: the metadata still lists it, the object is gone.
        """
        plan = self._plan
        with plan.lock:
            plan.deletions.setdefault(trigger_key, []).append((victim_key, bucket))

    def stats(self) -> dict[str, int]:
        """``retries``, ``reads`` (successful data reads), ``injected`` and one count per fault kind."""
        plan = self._plan
        with plan.lock:
            out = {
                "retries": plan.retries.value,
                "reads": sum(plan.reads.values()),
                "injected": sum(plan.injected.values()),
                "deleted": len(plan.deleted),
            }
            for fault in FAULTS:
                out[fault] = plan.injected[fault]
            return out

    @property
    def retry_count(self) -> int:
        """Retries made so far by this store and its pickled copies in this process."""
        return self._plan.retries.value

    def reads_of(self, key: str) -> int:
        """How many reads of ``key`` returned data (damaged or not)."""
        plan = self._plan
        with plan.lock:
            return plan.reads[key]

    # ----------------------------------------------------------------------------------------
    # The fault machinery
    # ----------------------------------------------------------------------------------------

    def _draw(self, key: str, *, data: bool) -> str | None:
        plan = self._plan
        with plan.lock:
            queue = plan.scripted.get(key)
            while queue:
                fault = queue.popleft()
                if data or fault in TRANSIENT_FAULTS:
                    plan.injected[fault] += 1
                    return fault
            # Two draws per attempt whatever the outcome: the sequence depends on the seed only.
            roll = plan.rng.random()
            pick = plan.rng.choice(self.faults)
            if roll >= self.failure_rate or (not data and pick in DATA_FAULTS):
                return None
            plan.injected[pick] += 1
            return pick

    def _read(self, op: str, key: str, bucket: str | None, fetch: Callable[[], bytes]) -> bytes:
        plan = self._plan
        rng_lock = plan.lock

        def attempt() -> bytes:
            fault = self._draw(key, data=True)
            if fault in TRANSIENT_FAULTS:
                raise RetryableFailure(_REASONS[fault])
            data = fetch()
            if fault == "truncate" and data:
                data = data[: len(data) // 2]
            elif fault == "corrupt" and data:
                with rng_lock:
                    pos = plan.rng.randrange(len(data))
                data = data[:pos] + bytes([data[pos] ^ 0xFF]) + data[pos + 1 :]
            return data

        data = call_with_retry(
            attempt,
            self.retry_policy,
            give_up=storage_give_up(f"{op} through FaultyStore", key=key, bucket=bucket),
            counter=plan.retries,
        )
        with plan.lock:
            plan.reads[key] += 1
            victims = plan.deletions.pop(key, [])
            plan.deleted.extend(victim for victim, _ in victims)
        for victim, victim_bucket in victims:
            self.inner.delete(victim, bucket=victim_bucket)
        return data

    def _meta(self, key: str, bucket: str | None, call: Callable[[], T]) -> T:
        def attempt() -> T:
            fault = self._draw(key, data=False)
            if fault is not None:
                raise RetryableFailure(_REASONS[fault])
            return call()

        return call_with_retry(
            attempt,
            self.retry_policy,
            give_up=storage_give_up("size through FaultyStore", key=key, bucket=bucket),
            counter=self._plan.retries,
        )

    # ----------------------------------------------------------------------------------------
    # ObjectStore
    # ----------------------------------------------------------------------------------------

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        return self._read("GET", key, bucket, lambda: self.inner.get(key, bucket=bucket))

    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        return self._read(
            "ranged GET", key, bucket, lambda: self.inner.get_range(key, start, end, bucket=bucket)
        )

    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        return self._read(
            "suffix GET", key, bucket, lambda: self.inner.get_suffix(key, length, bucket=bucket)
        )

    def size(self, key: str, *, bucket: str | None = None) -> int:
        return self._meta(key, bucket, lambda: self.inner.size(key, bucket=bucket))
