"""Bounded retries for metadata queries: exponential backoff under an attempt and time budget.

A backend classifies each database exception once: transient ones (SQLite "database is
locked"/busy, PostgreSQL connection resets, admin shutdown, server restarts, serialization
failures) are wrapped in :class:`TransientMetadataFailure` and retried; anything else is raised
at once. When the budget is spent, :class:`~streamhouse_beam.errors.MetadataUnavailableError`
is raised with the last failure attached as its cause.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from streamhouse_beam.errors import MetadataUnavailableError

__all__ = ["MetadataRetryPolicy", "TransientMetadataFailure", "call_with_retry"]

T = TypeVar("T")


class TransientMetadataFailure(Exception):
    """One attempt failed in a way worth retrying (internal: never escapes a backend).

    Attributes:
        reason: short description without secrets.
        cause: the database exception.
    """

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.cause = cause


@dataclasses.dataclass(frozen=True)
class MetadataRetryPolicy:
    """How long a metadata operation may keep retrying.

    Attributes:
        attempts: total attempts, the first included (>= 1).
        budget: seconds after which no new attempt is started.
        base_delay: first sleep in seconds; doubles per retry (with jitter).
        max_delay: cap on one sleep in seconds.
    """

    attempts: int = 8
    budget: float = 30.0
    base_delay: float = 0.05
    max_delay: float = 4.0

    def __post_init__(self) -> None:
        if not isinstance(self.attempts, int) or self.attempts < 1:
            raise ValueError(f"retry_attempts must be an integer >= 1, got {self.attempts!r}")
        if self.budget < 0:
            raise ValueError(f"retry_budget must be >= 0 seconds, got {self.budget!r}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("retry_base_delay and retry_max_delay must be >= 0")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> MetadataRetryPolicy:
        """Build a policy from ``retry_attempts``, ``retry_budget``, ``retry_base_delay``, ``retry_max_delay``."""
        d = cls()
        return cls(
            attempts=int(options.get("retry_attempts", d.attempts)),
            budget=float(options.get("retry_budget", d.budget)),
            base_delay=float(options.get("retry_base_delay", d.base_delay)),
            max_delay=float(options.get("retry_max_delay", d.max_delay)),
        )

    def delay(self, retry: int) -> float:
        """Sleep before retry ``retry`` (1-based): half fixed, half jittered, capped."""
        ceiling = min(self.max_delay, self.base_delay * float(2 ** (retry - 1)))
        return ceiling / 2 + random.uniform(0.0, ceiling / 2)


def call_with_retry(
    attempt: Callable[[], T],
    policy: MetadataRetryPolicy,
    *,
    what: str,
    on_retry: Callable[[TransientMetadataFailure], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, raises a non-transient error, or the budget is spent.

    Args:
        attempt: one try; raises TransientMetadataFailure for retryable failures.
        policy: attempts and time budget.
        what: description for the final error, e.g. ``"sqlite:///x.db: list topics"``.
        on_retry: called after each transient failure (backends drop broken connections here).
        sleep: injectable for tests.

    Raises:
        MetadataUnavailableError: every attempt failed transiently.
    """
    deadline = time.monotonic() + policy.budget
    failure: TransientMetadataFailure | None = None
    for n in range(1, policy.attempts + 1):
        try:
            return attempt()
        except TransientMetadataFailure as exc:
            failure = exc
            if on_retry is not None:
                on_retry(exc)
        if n == policy.attempts:
            break
        pause = policy.delay(n)
        if time.monotonic() + pause > deadline:
            break
        sleep(pause)
    assert failure is not None
    raise MetadataUnavailableError(
        f"{what}: still failing after {n} attempt(s) within a {policy.budget:g} s budget: "
        f"{failure.reason}"
    ) from (failure.cause or failure)
