"""Pipeline throughput on FnApiRunner (one worker): ReadFromStreamHouse against Beam's own sources.

Each measurement runs one whole pipeline (``source -> count``) in this process and times
``run() + wait_until_finish()``, runner start-up included on every side alike. The pairs:

* ``streamhouse``: ``ReadFromStreamHouse -> Count.Globally`` (``output="records"``);
* ``avro``: ``beam.io.ReadFromAvro -> Count.Globally`` over the same records;
* ``ceiling``: a bare splittable DoFn that claims each position and yields a pre-built tuple
  (one restriction per partition, the same ``max_poll_records`` checkpoints) — the runner's
  per-element ceiling for a source;
* ``batches``: ``ReadFromStreamHouse(output="batches") -> Map(num_rows) -> sum``.

Use :func:`measure` for round-robin medians and :func:`run_pipeline` for one timing.
"""

from __future__ import annotations

import gc
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.core import RestrictionProvider
from common import TOPIC, Dataset

from streamhouse_beam import ReadFromStreamHouse, StopPosition

#: Results of the count stage, by run id (FnApiRunner runs the DoFns in this process).
_RESULTS: dict[str, int] = {}
_RESULTS_LOCK = threading.Lock()
#: Pre-built records of the ceiling source, by dataset root.
_PREBUILT: dict[str, dict[int, list[Any]]] = {}


class _Store(beam.DoFn):  # type: ignore[misc]
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def process(self, count: int) -> None:
        with _RESULTS_LOCK:
            _RESULTS[self.run_id] = int(count)


class PrebuiltTuplesFn(beam.DoFn, RestrictionProvider):  # type: ignore[misc]
    """The ceiling: claims each offset of a partition and yields its pre-built tuple.

    Args:
        key: the dataset whose records were put in ``_PREBUILT``.
        max_poll_records: positions per ``process()`` call before a checkpoint, as the read does.
    """

    def __init__(self, key: str, max_poll_records: int) -> None:
        self.key = key
        self.max_poll_records = max_poll_records

    def initial_restriction(self, element: int) -> OffsetRange:
        return OffsetRange(0, len(_PREBUILT[self.key][element]))

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: int, restriction: OffsetRange) -> int:
        return restriction.size()

    def split(self, element: int, restriction: OffsetRange) -> Iterator[OffsetRange]:
        yield restriction

    def process(self, element: int, tracker: Any = beam.DoFn.RestrictionParam()) -> Iterator[Any]:
        records = _PREBUILT[self.key][element]
        rng = tracker.current_restriction()
        end = min(rng.start + self.max_poll_records, rng.stop)
        try_claim = tracker.try_claim
        for i in range(rng.start, end):
            if not try_claim(i):
                return
            yield records[i]
        if end < rng.stop:
            tracker.defer_remainder()


def _new_pipeline() -> beam.Pipeline:
    return beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(["--direct_num_workers=1"]))


def run_pipeline(build: Callable[[beam.Pipeline], Any]) -> tuple[float, int]:
    """Build ``source`` with ``build(p)``, count it, run; return ``(seconds, count)``."""
    run_id = f"run-{time.monotonic_ns()}"
    p = _new_pipeline()
    _ = build(p) | beam.ParDo(_Store(run_id))
    gc.collect()
    start = time.perf_counter()
    p.run().wait_until_finish()
    seconds = time.perf_counter() - start
    with _RESULTS_LOCK:
        count = _RESULTS.pop(run_id, 0)
    return seconds, count


def _read(
    ds: Dataset, max_poll_records: int | None, output: str, max_poll_bytes: int | None = None
) -> beam.PTransform:
    """The read; a ``None`` limit is left to the read's default."""
    return ReadFromStreamHouse(
        TOPIC,
        **ds.urls(),  # type: ignore[arg-type]
        stop=StopPosition.latest(),
        max_poll_records=max_poll_records,
        max_poll_bytes=max_poll_bytes,
        output=output,
    )


def streamhouse_count(ds: Dataset, max_poll_records: int | None) -> Callable[[beam.Pipeline], Any]:
    def build(p: beam.Pipeline) -> Any:
        return p | _read(ds, max_poll_records, "records") | beam.combiners.Count.Globally()

    return build


def batches_rows(
    ds: Dataset, max_poll_records: int | None, max_poll_bytes: int | None = None
) -> Callable[[beam.Pipeline], Any]:
    def build(p: beam.Pipeline) -> Any:
        return (
            p
            | _read(ds, max_poll_records, "batches", max_poll_bytes)
            | beam.Map(lambda batch: batch.num_rows)
            | beam.CombineGlobally(sum)
        )

    return build


def avro_count(ds: Dataset) -> Callable[[beam.Pipeline], Any]:
    def build(p: beam.Pipeline) -> Any:
        return p | beam.io.ReadFromAvro(str(ds.avro_path)) | beam.combiners.Count.Globally()

    return build


def ceiling_count(ds: Dataset, max_poll_records: int) -> Callable[[beam.Pipeline], Any]:
    key = str(ds.root)
    if key not in _PREBUILT:
        _PREBUILT[key] = ds.partition_records()

    def build(p: beam.Pipeline) -> Any:
        return (
            p
            | beam.Create(list(range(ds.partitions)))
            | beam.ParDo(PrebuiltTuplesFn(key, max_poll_records))
            | beam.combiners.Count.Globally()
        )

    return build


def measure(
    cases: dict[str, Callable[[beam.Pipeline], Any]], expected: int, repeat: int
) -> dict[str, dict[str, Any]]:
    """Time every case ``repeat`` times, round-robin; return median seconds and records/s.

    Raises:
        SystemExit: a pipeline counted a different number of records than ``expected``.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, build in cases.items():
            seconds, count = run_pipeline(build)
            if count != expected:
                raise SystemExit(f"{name}: counted {count} records, expected {expected}")
            times[name].append(seconds)
    out = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        out[name] = {"seconds": median, "records_per_s": expected / median, "samples": samples}
    return out
