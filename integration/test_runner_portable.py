"""ReadFromStreamHouse through PortableRunner against Beam's local job service (LOOPBACK)."""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam
import pytest
from _runners_support import CountUpTo, toy_sdf_expected
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]


@pytest.fixture(scope="module")
def job_service() -> Iterator[runners.PortableJobService]:
    with runners.PortableJobService() as service:
        yield service


def test_portable_runner_runs_a_toy_splittable_dofn(
    job_service: runners.PortableJobService,
) -> None:
    sizes = [3, 5, 7]
    options = PipelineOptions(runners.portable_pipeline_args(job_service.endpoint))
    with beam.Pipeline(options=options) as p:
        out = p | beam.Create(sizes) | beam.ParDo(CountUpTo())
        assert_that(out, equal_to(toy_sdf_expected(sizes)))
