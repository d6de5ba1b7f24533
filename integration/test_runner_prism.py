"""ReadFromStreamHouse on Beam's Prism runner, built from the Go module proxy by fetch-runners.

Prism splits splittable DoFns on its own initiative, so these tests exercise the restriction
splitting logic in a way FnApiRunner never does.
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


def test_prism_runs_a_toy_splittable_dofn() -> None:
    sizes = [3, 5, 7, 1000]
    options = PipelineOptions(runners.prism_pipeline_args())
    with beam.Pipeline(options=options) as p:
        out = p | beam.Create(sizes) | beam.ParDo(CountUpTo())
        assert_that(out, equal_to(toy_sdf_expected(sizes)))
