"""Bounded retries with exponential backoff and full jitter, shared by the network backends.

A backend wraps one attempt of an operation in a callable that either returns, raises a final
project error (not found, permission), or raises :class:`RetryableFailure` for throttling,
5xx answers, timeouts, resets and truncated bodies. :func:`call_with_retry` repeats the
attempt with growing, jittered sleeps until it succeeds or the attempt budget is spent, and
then raises :class:`~streamhouse_beam.errors.TransientStorageError` naming the key.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from streamhouse_beam.errors import TransientStorageError

__all__ = ["RetryCounter", "RetryPolicy", "RetryableFailure", "call_with_retry"]

T = TypeVar("T")


class RetryableFailure(Exception):
    """One attempt failed in a way worth retrying (internal: never escapes a backend).

    Attributes:
        reason: short description without secrets, e.g. ``"HTTP 503 SlowDown"``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How many attempts an operation gets and how long to wait between them.

    Attributes:
        attempts: total attempts, the first included (>= 1).
        base_delay: upper bound of the first sleep, in seconds; doubles per retry.
        max_delay: cap on any single sleep, in seconds.
    """

    attempts: int = 6
    base_delay: float = 0.1
    max_delay: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"retry_attempts must be an integer >= 1, got {self.attempts!r}")
        if self.base_delay < 0:
            raise ValueError(f"retry_base_delay must be >= 0, got {self.base_delay!r}")
        if self.max_delay < 0:
            raise ValueError(f"retry_max_delay must be >= 0, got {self.max_delay!r}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> RetryPolicy:
        """Build a policy from ``retry_attempts``, ``retry_base_delay``, ``retry_max_delay``."""
        default = cls()
        return cls(
            attempts=int(options.get("retry_attempts", default.attempts)),
            base_delay=float(options.get("retry_base_delay", default.base_delay)),
            max_delay=float(options.get("retry_max_delay", default.max_delay)),
        )

    def delay(self, retry: int) -> float:
        """Sleep before retry number ``retry`` (1-based): uniform in [0, min(cap, base*2^(n-1))].

        Full jitter spreads the retries of many workers hitting the same throttled prefix.
        """
        ceiling = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        return random.uniform(0.0, ceiling)


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
    what: str,
    key: str | None,
    bucket: str | None,
    counter: RetryCounter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, raises a final error, or the budget is spent.

    Args:
        attempt: one try of the operation; raises :class:`RetryableFailure` to be retried.
        policy: attempt budget and backoff.
        what: the operation for the error message, e.g. ``"S3 GET"``.
        key: object key for the error.
        bucket: bucket for the error.
        counter: incremented once per retry.
        sleep: injectable sleep (tests).

    Returns:
        What ``attempt`` returned.

    Raises:
        TransientStorageError: every attempt failed with a retryable failure.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return attempt()
        except RetryableFailure as failure:
            if tries >= policy.attempts:
                raise TransientStorageError(
                    f"{what} failed {tries} time(s), last with {failure.reason}; "
                    "giving up (raise retry_attempts or check the store's health)",
                    key=key,
                    bucket=bucket,
                ) from (failure.__cause__ or failure)
            if counter is not None:
                counter.increment()
            sleep(policy.delay(tries))
