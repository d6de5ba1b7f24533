"""Runner splits that land mid-bundle: a gate the read's consumer blocks on, and the
FnApiRunner split manager that sends ``ProcessBundleSplitRequest`` s while it is closed.

FnApiRunner never splits by itself; ``fn_runner.split_manager`` with the gRPC-embedded SDK
harness does. The manager picks a random element of the bundle; a DoFn fused after the read
calls :meth:`SplitGate.passed` for each element and blocks at that one until the manager has
asked its splits, so they arrive while the splittable DoFn is still reading.

Each test module keeps its own module-level gate (its ``splits`` count is that module's proof
that splits happened) and its own consumer DoFn that reaches the gate as a module global.
"""

from __future__ import annotations

import collections
import random
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.portability.api import beam_fn_api_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner, fn_runner
from apache_beam.transforms import environments


class SplitGate:
    """Blocks the read's consumer at its n-th element until the split manager has split."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.target = -1
        self.reached = threading.Event()
        self.release = threading.Event()
        self.outputs: list[Any] = []
        self.splits = 0

    def arm(self, target: int) -> None:
        with self.lock:
            self.count = 0
            self.target = target
            self.reached.clear()
            self.release.clear()

    def passed(self, items: Iterable[Any]) -> None:
        """Record what one element carried; block if it is the armed one."""
        with self.lock:
            self.outputs.extend(items)
            self.count += 1
            hit = self.count == self.target
        if hit:
            self.reached.set()
            self.release.wait(10)

    def split_manager(self, rng: random.Random) -> Callable[[int], Iterator[float | None]]:
        def manager(num_elements: int) -> Iterator[float | None]:
            self.arm(rng.randint(1, max(1, num_elements)))
            yield None  # let the runner send the bundle's elements
            if self.reached.wait(0.1):
                for _ in range(rng.randint(1, 3)):
                    result = yield rng.choice([0.0, rng.random(), rng.random() / 4, 0.5])
                    if isinstance(result, beam_fn_api_pb2.ProcessBundleSplitResponse):
                        self.splits += 1
            self.release.set()

        return manager

    def run(
        self, read: beam.PTransform, consumer: beam.DoFn, rng: random.Random
    ) -> collections.Counter[Any]:
        """Run ``read`` (labelled ``Read``) into ``consumer`` under random splits.

        Returns:
            The multiset of items the consumer passed through the gate.
        """
        self.outputs = []
        runner = FnApiRunner(
            default_environment=environments.EmbeddedPythonGrpcEnvironment.default()
        )
        with fn_runner.split_manager("Read/ReadPartitions", self.split_manager(rng)):
            pipeline = beam.Pipeline(runner=runner)
            _ = pipeline | "Read" >> read | beam.ParDo(consumer)
            pipeline.run().wait_until_finish()
        return collections.Counter(self.outputs)
