"""Object-store faults against Google Cloud Storage: the GCS emulator behind the fault proxy.

The same faults as ``test_faults_s3.py`` (5xx answers, resets, bodies cut under a larger
``Content-Length``, stalls past the read timeout, and bodies damaged silently), against the
``gs://`` store: every whole-object read returns exactly the stored bytes, each fault costing
one counted retry, and a bounded pipeline with 30% of requests failing reads exactly once.
"""

from __future__ import annotations

import pathlib
from typing import Any

import pytest

from streamhouse_beam.storage import open_store
from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.servers import GcsEmulator

BUCKET = "faults-gcs"
KEY = "org-1/data/t/0/00000000000000000000.seg"
OBJECT = bytes(range(256)) * 129


@pytest.fixture(scope="module")
def gcs(gcs_emulator: GcsEmulator) -> GcsEmulator:
    """The session's GCS emulator (this module's buckets are its own)."""
    return gcs_emulator


def _options(endpoint: str, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "endpoint": endpoint,
        "anonymous": True,
        "project": "test-project",
        "timeout": 0.5,
        "retry_attempts": 12,
        "retry_base_delay": 0.01,
        "retry_max_delay": 0.05,
    }
    options.update(extra)
    return options


@pytest.fixture(scope="module")
def seeded(gcs: GcsEmulator) -> str:
    store = open_store(f"gs://{BUCKET}", _options(gcs.endpoint))
    store.client().create_bucket(BUCKET)  # type: ignore[attr-defined]
    store.put(KEY, OBJECT)
    store.close()
    return KEY


@pytest.mark.parametrize("fault", ["500", "503", "reset", "truncate", "slow", "flip", "short"])
def test_each_fault_kind_on_gcs_is_retried_to_the_exact_bytes(
    gcs: GcsEmulator, seeded: str, fault: str
) -> None:
    with FaultProxy(gcs.endpoint, failure_rate=0.0, slow_seconds=1.5) as proxy:
        store = open_store(f"gs://{BUCKET}", _options(proxy.url))
        # flip/short: the GCS client checks the object's hash on whole downloads.
        proxy.inject(fault)
        assert store.get(seeded) == OBJECT
        assert (proxy.stats()[fault], store.retry_count) == (1, 1)  # type: ignore[attr-defined]
        store.close()


@pytest.mark.slow
def test_bounded_read_from_gcs_with_thirty_percent_faults_is_exact(
    gcs: GcsEmulator, tmp_path: pathlib.Path
) -> None:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from streamhouse_beam.beam import ReadFromStreamHouse
    from streamhouse_beam.positions import StopPosition
    from streamhouse_beam.testing.local import LocalStreamHouse

    bucket = "faults-gcs-pipeline"
    writer = open_store(f"gs://{bucket}", _options(gcs.endpoint))
    writer.client().create_bucket(bucket)  # type: ignore[attr-defined]
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", writer, bucket=bucket, segment_max_records=15
    ) as house:
        house.create_schema()
        house.create_topic("views", partitions=2)
        for p in (0, 1):
            house.append("views", p, [f"p{p}-{i}" for i in range(60)], flush=True)
        expected = [(p, i, f"p{p}-{i}".encode()) for p in (0, 1) for i in range(60)]
        with FaultProxy(gcs.endpoint, failure_rate=0.3, seed=77, slow_seconds=1.0) as proxy:
            pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
            records = pipeline | ReadFromStreamHouse(
                "views",
                metadata_url=house.metadata_url,
                storage_url=f"gs://{bucket}",
                storage_options=_options(proxy.url),
                stop=StopPosition.latest(),
                max_poll_records=20,
                cache_max_bytes=8 * 1024 * 1024 + 21,
            )
            assert_that(
                records | beam.Map(lambda r: (r.partition, r.offset, r.value)), equal_to(expected)
            )
            result = pipeline.run()
            result.wait_until_finish()
            injected = proxy.stats()["injected"]
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("streamhouse"))["counters"]
    }
    assert injected >= 1
    assert 1 <= counters["storage_retries"] <= injected
