"""The one retry loop both store families use: the metadata stores' flavour of it.

The object-store flavour (full jitter, TransientStorageError naming the key, the retry
counter) is tested with the storage errors in ``test_storage_errors.py``.
"""

from __future__ import annotations

import sqlite3

import pytest

from streamhouse_beam._retry import (
    METADATA_RETRY,
    STORAGE_RETRY,
    RetryableFailure,
    RetryCounter,
    RetryPolicy,
    call_with_retry,
    metadata_give_up,
)
from streamhouse_beam.errors import MetadataUnavailableError


def test_metadata_give_up_names_the_query_and_chains_the_database_error() -> None:
    cause = sqlite3.OperationalError("database is locked")
    seen: list[str] = []
    counter = RetryCounter()
    policy = RetryPolicy(attempts=3, base_delay=0.0, max_delay=0.0, budget=30.0, jitter="half")

    def attempt() -> None:
        raise RetryableFailure("list topics: database is locked", cause)

    with pytest.raises(MetadataUnavailableError) as info:
        call_with_retry(
            attempt,
            policy,
            give_up=metadata_give_up("sqlite:///x.db: list topics", policy),
            on_failure=lambda failure: seen.append(failure.reason),
            counter=counter,
            sleep=lambda _s: None,
        )
    assert "sqlite:///x.db: list topics: still failing after 3 attempt(s)" in str(info.value)
    assert info.value.__cause__ is cause
    # Every failure reaches on_failure (a store drops its broken connection each time); only
    # the attempts after the first count as retries.
    assert len(seen) == 3
    assert counter.value == 2


def test_no_attempt_starts_once_the_next_sleep_would_pass_the_time_budget() -> None:
    calls = 0
    sleeps: list[float] = []

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise RetryableFailure("busy")

    policy = RetryPolicy(attempts=50, base_delay=1.0, max_delay=1.0, budget=2.5, jitter="half")
    with pytest.raises(MetadataUnavailableError):
        call_with_retry(attempt, policy, give_up=metadata_give_up("q", policy), sleep=sleeps.append)
    # The injected sleep does not pass time, so the budget is spent by the planned pauses
    # only when one alone exceeds it: here it never does, and attempts bound the loop.
    assert calls == 50 and len(sleeps) == 49

    policy = RetryPolicy(attempts=50, base_delay=1.0, max_delay=1.0, budget=0.4, jitter="half")
    calls = 0
    with pytest.raises(MetadataUnavailableError):
        call_with_retry(attempt, policy, give_up=metadata_give_up("q", policy), sleep=sleeps.append)
    assert calls == 1  # the first pause (>= 0.5 s) would already end past 0.4 s


def test_half_jitter_keeps_half_of_each_pause_fixed() -> None:
    policy = RetryPolicy(base_delay=0.4, max_delay=1.0, jitter="half")
    for retry, ceiling in [(1, 0.4), (2, 0.8), (3, 1.0), (7, 1.0)]:
        assert all(ceiling / 2 <= policy.delay(retry) <= ceiling for _ in range(50))


def test_options_override_each_family_s_defaults() -> None:
    assert RetryPolicy.from_options({}, METADATA_RETRY) == METADATA_RETRY
    assert RetryPolicy.from_options({}, STORAGE_RETRY) == STORAGE_RETRY
    tuned = RetryPolicy.from_options({"retry_attempts": 2, "retry_budget": 1}, METADATA_RETRY)
    assert (tuned.attempts, tuned.budget, tuned.jitter) == (2, 1.0, "half")
    assert (METADATA_RETRY.attempts, METADATA_RETRY.budget) == (8, 30.0)
    assert (STORAGE_RETRY.attempts, STORAGE_RETRY.budget, STORAGE_RETRY.jitter) == (6, None, "full")


@pytest.mark.parametrize(
    "options",
    [{"retry_attempts": 0}, {"retry_budget": -1}, {"retry_base_delay": -0.1}],
)
def test_invalid_retry_options_are_refused_naming_the_option(options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        RetryPolicy.from_options(options, METADATA_RETRY)
