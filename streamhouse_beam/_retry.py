"""Bounded retries with exponential backoff, shared by the object stores and the metadata stores.

A backend wraps one attempt of an operation in a callable that either returns, raises a final
project error (not found, permission, not a StreamHouse store), or raises
:class:`RetryableFailure` for what a later attempt may not meet: throttling, 5xx answers,
timeouts, connection resets and truncated bodies from object stores; a locked SQLite file,
PostgreSQL connection losses, shutdowns and serialization failures from metadata stores.
:func:`call_with_retry` repeats the attempt with growing, jittered sleeps until it succeeds or
the policy's attempts (and, when it has one, its time budget) are spent, and then raises the
error the caller builds for that case (:class:`~streamhouse_beam.errors.TransientStorageError`
naming the key, :class:`~streamhouse_beam.errors.MetadataUnavailableError` naming the query),
chained to the last failure's cause.

The two families keep different defaults: :data:`STORAGE_RETRY` (6 attempts, full jitter, no
time budget) and :data:`METADATA_RETRY` (8 attempts within 30 s, half of each sleep fixed).
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

from streamhouse_beam.errors import MetadataUnavailableError, TransientStorageError

__all__ = [
    "METADATA_RETRY",
    "STORAGE_RETRY",
    "GiveUp",
    "RetryCounter",
    "RetryPolicy",
    "RetryableFailure",
    "call_with_retry",
    "metadata_give_up",
    "storage_give_up",
]

T = TypeVar("T")


class RetryableFailure(Exception):
    """One attempt failed in a way worth retrying (internal: never escapes a backend).

    Attributes:
        reason: short description without secrets, e.g. ``"HTTP 503 SlowDown"``.
        cause: the SDK or database exception, when the backend did not raise ``from`` it.
    """

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many attempts an operation gets and how long to wait between them.

    Attributes:
        attempts: total attempts, the first included (>= 1).
        base_delay: upper bound of the first sleep, in seconds; doubles per retry.
        max_delay: cap on any single sleep, in seconds.
        budget: seconds after the first attempt past which no new attempt is started
            (``None``: only ``attempts`` bounds the retries).
        jitter: ``"full"`` sleeps uniformly in [0, ceiling], which spreads the retries of many
            workers hitting the same throttled prefix; ``"half"`` keeps half of the ceiling
            fixed, so a locked database is not hammered again at once.
    """

    attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 5.0
    budget: float | None = None
    jitter: Literal["full", "half"] = "full"

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"retry_attempts must be an integer >= 1, got {self.attempts!r}")
        if self.base_delay < 0:
            raise ValueError(f"retry_base_delay must be >= 0, got {self.base_delay!r}")
        if self.max_delay < 0:
            raise ValueError(f"retry_max_delay must be >= 0, got {self.max_delay!r}")
        if self.budget is not None and self.budget < 0:
            raise ValueError(f"retry_budget must be >= 0 seconds, got {self.budget!r}")
        if self.jitter not in ("full", "half"):
            raise ValueError(f"jitter must be 'full' or 'half', got {self.jitter!r}")

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], defaults: RetryPolicy | None = None
    ) -> RetryPolicy:
        """Override ``defaults`` with ``retry_attempts``, ``retry_base_delay``,
        ``retry_max_delay`` and ``retry_budget`` from ``options``."""
        d = defaults or cls()
        budget = options.get("retry_budget", d.budget)
        return dataclasses.replace(
            d,
            attempts=int(options.get("retry_attempts", d.attempts)),
            base_delay=float(options.get("retry_base_delay", d.base_delay)),
            max_delay=float(options.get("retry_max_delay", d.max_delay)),
            budget=None if budget is None else float(budget),
        )

    def delay(self, retry: int) -> float:
        """Sleep before retry number ``retry`` (1-based), under min(cap, base * 2^(retry-1))."""
        ceiling = min(self.max_delay, self.base_delay * float(2 ** (retry - 1)))
        if self.jitter == "full":
            return random.uniform(0.0, ceiling)
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)


#: Object stores: bounded by attempts only, full jitter.
STORAGE_RETRY = RetryPolicy()
#: Metadata stores: a locked SQLite file or a restarting server gets up to 30 s.
METADATA_RETRY = RetryPolicy(attempts=8, base_delay=0.05, max_delay=4.0, budget=30.0, jitter="half")


#: Builds the error raised once retrying stops, from the last failure and the attempts made.
GiveUp = Callable[[RetryableFailure, int], Exception]


def storage_give_up(what: str, *, key: str | None, bucket: str | None) -> GiveUp:
    """The object stores' final error: :class:`TransientStorageError` naming the key.

    Args:
        what: the operation, e.g. ``"S3 GET"``.
        key: object key for the error.
        bucket: bucket for the error.
    """

    def build(failure: RetryableFailure, tries: int) -> Exception:
        return TransientStorageError(
            f"{what} failed {tries} time(s), last with {failure.reason}; "
            "giving up (raise retry_attempts or check the store's health)",
            key=key,
            bucket=bucket,
        )

    return build


def metadata_give_up(what: str, policy: RetryPolicy) -> GiveUp:
    """The metadata stores' final error: :class:`MetadataUnavailableError` naming the query.

    Args:
        what: the store and the query, e.g. ``"sqlite:///x.db: list topics"``.
        policy: the policy that was spent (its time budget is named).
    """

    def build(failure: RetryableFailure, tries: int) -> Exception:
        return MetadataUnavailableError(
            f"{what}: still failing after {tries} attempt(s) within a {policy.budget or 0:g} s "
            f"budget: {failure.reason}"
        )

    return build


class RetryCounter:
    """A thread-safe count of retries, kept per store instance for metrics.

    Pickles to a fresh zero count: the copy is a different store instance on another worker.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def increment(self) -> None:
        """Count one retry."""
        with self._lock:
            self._count += 1

    @property
    def value(self) -> int:
        """Retries counted so far."""
        return self._count

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]


def call_with_retry(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    give_up: GiveUp,
    on_failure: Callable[[RetryableFailure], None] | None = None,
    counter: RetryCounter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, raises a final error, or the policy is spent.

    Args:
        attempt: one try of the operation; raises :class:`RetryableFailure` to be retried.
        policy: attempt budget, time budget and backoff.
        give_up: builds the error to raise from the last failure and the number of attempts
            made (:func:`storage_give_up`, :func:`metadata_give_up`); it is raised chained to
            that failure's cause.
        on_failure: called after every retryable failure, the last one included (metadata
            stores drop a broken connection and count the failure here).
        counter: incremented once per retry, that is before every attempt but the first.
        sleep: injectable sleep (tests).

    Returns:
        What ``attempt`` returned.

    Raises:
        Exception: what ``give_up`` returned, once every attempt failed retryably.
    """
    deadline = None if policy.budget is None else time.monotonic() + policy.budget
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except RetryableFailure as exc:
            failure = exc
        if on_failure is not None:
            on_failure(failure)
        pause = policy.delay(tries) if tries < policy.attempts else 0.0
        if tries >= policy.attempts or (
            deadline is not None and time.monotonic() + pause > deadline
        ):
            raise give_up(failure, tries) from (failure.cause or failure.__cause__ or failure)
        if counter is not None:
            counter.increment()
        sleep(pause)
