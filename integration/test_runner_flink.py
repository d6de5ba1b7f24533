"""ReadFromStreamHouse on Beam's FlinkRunner with an embedded Flink (``--flink_master=[local]``).

The job server comes from ``.ci/fetch-runners`` (see ``flink-job-server.env`` in the cache for
the Flink/Beam pairing); the SDK harness is this process (LOOPBACK).
"""

from __future__ import annotations

import apache_beam as beam
import pytest
from _runners_support import CountUpTo, ensure_runners, toy_sdf_expected
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]


@pytest.fixture(scope="module", autouse=True)
def _runners_fetched() -> None:
    ensure_runners()


def test_flink_runs_a_toy_splittable_dofn() -> None:
    sizes = [3, 5, 7]
    options = PipelineOptions(runners.flink_pipeline_args())
    with beam.Pipeline(options=options) as p:
        out = p | beam.Create(sizes) | beam.ParDo(CountUpTo())
        assert_that(out, equal_to(toy_sdf_expected(sizes)))
