"""Everything ReadFromStreamHouse ships to workers pickles with both of Beam's pickle libraries.

Runners (and Dataflow) serialize the transform's DoFns, restriction providers, coders and
decoders with ``apache_beam.internal.pickler``, which is dill or cloudpickle depending on
``--pickle_library``. These tests pickle them *after use* — once clients, caches, prefetch
threads and locks exist — and check that the copies still work, and finally run a whole
pipeline with each library selected.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
import pytest
from _runners_support import Topic
from apache_beam.internal import pickler
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.sdf_utils import (
    RestrictionTrackerView,
    ThreadsafeRestrictionTracker,
    ThreadsafeWatermarkEstimator,
)
from apache_beam.testing.util import assert_that, equal_to

from streamhouse_beam import StartPosition, StopPosition
from streamhouse_beam.beam import PartitionDescriptor, ReadFromStreamHouse
from streamhouse_beam.beam._coders import StreamHouseRecordCoder
from streamhouse_beam.beam._read_fn import CommittingReadPartitionsFn
from streamhouse_beam.beam._restriction import PartitionRestrictionCoder
from streamhouse_beam.beam._watermark import PartitionWatermarkEstimatorProvider
from streamhouse_beam.decoders import AvroDecoder, SchemaRegistryDecoder

LIBRARIES = [pickler.USE_DILL, pickler.USE_CLOUDPICKLE]


@pytest.fixture(params=LIBRARIES)
def pickle_library(request: pytest.FixtureRequest) -> Iterator[str]:
    library: str = request.param
    pickler.set_library(library)
    try:
        yield library
    finally:
        pickler.set_library(pickler.DEFAULT_PICKLE_LIB)


def _roundtrip(obj: Any) -> Any:
    return pickler.loads(pickler.dumps(obj))


class _Finalizer:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def register(self, callback: Any) -> None:
        self.callbacks.append(callback)


def _drive(fn: CommittingReadPartitionsFn, element: PartitionDescriptor) -> list[Any]:
    """One process() call, as a runner makes it; returns the records emitted."""
    provider = PartitionWatermarkEstimatorProvider()
    restriction = fn.initial_restriction(element)
    tracker = ThreadsafeRestrictionTracker(fn.create_tracker(restriction))
    estimator = ThreadsafeWatermarkEstimator(
        provider.create_watermark_estimator(provider.initial_estimator_state(element, restriction))
    )
    finalizer = _Finalizer()
    out = [
        item.value
        for item in fn.process(element, finalizer, RestrictionTrackerView(tracker), estimator)
    ]
    for callback in finalizer.callbacks:
        callback()
    return out


def _json_topic(tmp_path: pathlib.Path) -> Topic:
    topic = Topic(tmp_path, partitions=2, records_per_partition=9, segment_max_records=4)
    return topic


def test_used_read_fn_pickles_and_the_copy_reads_on(
    pickle_library: str, tmp_path: pathlib.Path
) -> None:
    topic = _json_topic(tmp_path)
    transform = ReadFromStreamHouse(
        topic.name,
        **topic.read_kwargs(
            stop=StopPosition.latest(),
            value_decoder="utf-8",
            commit_offsets_group=f"pickled-{pickle_library}",
            storage_options={"fsync": False},
        ),
    )
    fn = CommittingReadPartitionsFn(transform.config)
    fn.setup()
    fn.start_bundle()
    element = PartitionDescriptor(topic.name, 0, StartPosition.earliest(), StopPosition.latest())
    first = _drive(fn, element)
    assert [r.offset for r in first] == [0, 1, 2, 3]  # max_poll_records=4, then a checkpoint

    # Now it holds a metadata client, a segment cache with prefetch threads, readers, locks.
    copy = _roundtrip(fn)
    copy.setup()
    copy.start_bundle()
    resumed = PartitionDescriptor(
        topic.name, 0, StartPosition.offsets({0: 4}), StopPosition.latest()
    )
    rest = _drive(copy, resumed)
    assert [(r.offset, r.value) for r in rest] == [(o, f"orders/0/{o}") for o in range(4, 8)]
    copy.teardown()
    fn.teardown()


def test_used_transform_pickles_and_the_copy_builds_the_same_pipeline(
    pickle_library: str, tmp_path: pathlib.Path
) -> None:
    topic = _json_topic(tmp_path)
    expected = sorted(json.dumps(list(e)) for e in topic.expected)
    transform = ReadFromStreamHouse(
        topic.name, **topic.read_kwargs(stop=StopPosition.latest(), value_decoder=lambda b: b)
    )

    def run(read: ReadFromStreamHouse) -> None:
        with beam.Pipeline(runner="FnApiRunner") as p:
            out = (
                p
                | read
                | beam.Map(
                    lambda r: json.dumps(
                        [
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key.decode(),
                            r.value.decode(),
                            r.timestamp,
                        ]
                    )
                )
            )
            assert_that(out, equal_to(expected))

    run(transform)
    copy = _roundtrip(transform)
    assert copy.display_data().keys() == transform.display_data().keys()
    # An applied PTransform stays bound to its pipeline (pickled as a stub): unbind the copy
    # so it can be applied again, as Beam does with transforms it rebuilds from a graph.
    copy.pipeline = None
    run(copy)


def test_decoders_coders_and_providers_survive_pickling_after_use(pickle_library: str) -> None:
    schema = {
        "type": "record",
        "name": "Click",
        "fields": [{"name": "page", "type": "string"}, {"name": "n", "type": "long"}],
    }
    import io

    import fastavro

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"page": "/a", "n": 3})
    avro = AvroDecoder(schema)
    assert avro.decode(buf.getvalue()) == {"page": "/a", "n": 3}
    assert _roundtrip(avro).decode(buf.getvalue()) == {"page": "/a", "n": 3}

    registry = SchemaRegistryDecoder(
        "http://127.0.0.1:9", headers={"Authorization": "Bearer secret"}, unframed="json"
    )
    assert registry.decode(b'{"unframed": true}') == {"unframed": True}
    copy = _roundtrip(registry)
    assert copy.decode(b'{"unframed": true}') == {"unframed": True}
    assert "secret" not in repr(copy)

    record_coder = StreamHouseRecordCoder()
    restriction_coder = PartitionRestrictionCoder()
    for obj in (record_coder, restriction_coder, PartitionWatermarkEstimatorProvider()):
        assert type(_roundtrip(obj)) is type(obj)


@pytest.mark.slow
@pytest.mark.parametrize("library", LIBRARIES)
def test_pipeline_runs_with_each_pickle_library(library: str, tmp_path: pathlib.Path) -> None:
    topic = _json_topic(tmp_path)
    options = PipelineOptions([f"--pickle_library={library}"])
    try:
        with beam.Pipeline(runner="FnApiRunner", options=options) as p:
            out = (
                p
                | ReadFromStreamHouse(
                    topic.name,
                    **topic.read_kwargs(
                        stop=StopPosition.latest(), output="rows", value_decoder="utf-8"
                    ),
                )
                | beam.Map(lambda row: (row.partition, row.offset, row.value))
            )
            assert_that(out, equal_to([(e[1], e[2], e[4]) for e in topic.expected]))
    finally:
        pickler.set_library(pickler.DEFAULT_PICKLE_LIB)
