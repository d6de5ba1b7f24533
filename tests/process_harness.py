"""Drive ``ReadPartitionsFn.process()`` directly, one call at a time, as a runner would.

Used by the tests that check the DoFn's poll loop without a pipeline
(``tests/test_read_fn_process.py``, ``tests/test_read_columns.py``): Beam's thread-safe tracker
and watermark estimator wrap the DoFn's own, and every output's timestamp is observed.
"""

from __future__ import annotations

import pathlib
from typing import Any

from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)

from streamhouse_beam import ReadFromStreamHouse
from streamhouse_beam.beam.read_fn import ReadPartitionsFn
from streamhouse_beam.beam.watermark import PartitionWatermarkEstimatorProvider
from tests.read_helpers import urls


class Finalizer:
    """A bundle finalizer that keeps the registered callbacks (a test may run them)."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def register(self, callback: Any) -> None:
        self.callbacks.append(callback)


class Harness:
    """One process() call at a time, as a runner would make it."""

    def __init__(self, tmp: pathlib.Path, **kwargs: Any) -> None:
        kwargs.setdefault("poll_interval", 0.05)
        self.fn = ReadPartitionsFn(ReadFromStreamHouse("t", **urls(tmp), **kwargs).config)
        self.fn.setup()
        self.fn.start_bundle()
        self.provider = PartitionWatermarkEstimatorProvider()

    def start(self, element: Any) -> tuple[Any, Any]:
        """The initial restriction and watermark-estimator state of ``element``."""
        restriction = self.fn.initial_restriction(element)
        return restriction, self.provider.initial_estimator_state(element, restriction)

    def call(
        self, element: Any, restriction: Any, wm_state: Any
    ) -> tuple[list[Any], ThreadsafeRestrictionTracker, ThreadsafeWatermarkEstimator, Finalizer]:
        """One process() call; returns its outputs, tracker, estimator and finalizer."""
        tracker = ThreadsafeRestrictionTracker(self.fn.create_tracker(restriction))
        estimator = ThreadsafeWatermarkEstimator(self.provider.create_watermark_estimator(wm_state))
        finalizer = Finalizer()
        out = []
        for item in self.fn.process(element, finalizer, RestrictionTrackerView(tracker), estimator):
            out.append(item)
            estimator.observe_timestamp(item.timestamp)  # what the runner does for each output
        return out, tracker, estimator, finalizer
