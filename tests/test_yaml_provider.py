"""The Beam YAML provider: ``transforms/streamhouse.yaml`` names
:func:`streamhouse_beam.beam.yaml_provider.read_from_streamhouse`, which builds the read.

``integration/test_yaml.py`` runs YAML pipelines as a user does (``apache_beam.yaml.main`` in a
subprocess); these tests load the provider file through Beam's own loader and run a pipeline
in this process.
"""

from __future__ import annotations

import inspect
import pathlib
from typing import Any

import apache_beam as beam
import pytest
from apache_beam.portability.api import schema_pb2
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.yaml import yaml_provider, yaml_transform

from streamhouse_beam import EventTimePolicy, ReadFromStreamHouse, StartPosition, StopPosition
from streamhouse_beam.beam.yaml_provider import read_from_streamhouse
from tests.read_helpers import Collect, new_sink, sink, urls, write_topic

PROVIDER = pathlib.Path(__file__).resolve().parents[1] / "transforms" / "streamhouse.yaml"
URLS = {"metadata_url": "sqlite:////tmp/yaml-provider-test.db", "storage_url": "file:///tmp/y"}


def _provider() -> Any:
    (provider,) = [
        p
        for p in yaml_provider.load_providers(str(PROVIDER))
        if "ReadFromStreamHouse" in p.provided_transforms()
    ]
    return provider


def test_the_provider_file_names_the_module_function() -> None:
    provider = _provider()
    read = provider.create_transform("ReadFromStreamHouse", {"topic": "t", **URLS}, None)
    assert isinstance(read, ReadFromStreamHouse)
    assert read.topics == ["t"] and read.config.output == "rows"
    assert read.config.decoder.name == "utf-8"


def test_the_config_schema_types_each_option() -> None:
    # Beam YAML documents and checks configs with this schema, derived from the signature.
    schema = _provider().config_schema("ReadFromStreamHouse")
    fields = {field.name: field.type for field in schema.fields}
    assert list(fields) == list(inspect.signature(read_from_streamhouse).parameters)
    assert not fields["topic"].nullable and fields["topic"].atomic_type == schema_pb2.STRING
    expected = {
        "storage_url": schema_pb2.STRING,
        "start": schema_pb2.STRING,
        "stop": schema_pb2.STRING,
        "max_records": schema_pb2.INT64,
        "poll_interval": schema_pb2.DOUBLE,
    }
    for name, atomic_type in expected.items():
        assert fields[name].nullable and fields[name].atomic_type == atomic_type, name
    description = _provider().description("ReadFromStreamHouse")
    assert description and "schema rows" in description


@pytest.mark.parametrize(
    ("config", "start", "stop"),
    [
        ({}, StartPosition.earliest(), None),
        ({"start": "latest", "stop": "latest"}, StartPosition.latest(), StopPosition.latest()),
        (
            {"start": "offset:3", "stop": "offset:9"},
            StartPosition.offsets({}, default=3),
            StopPosition.offsets({}, default=9),
        ),
        (
            {"start": "committed:g", "stop": "timestamp:5"},
            StartPosition.committed("g"),
            StopPosition.timestamp(5),
        ),
        ({"start": "timestamp:4"}, StartPosition.timestamp(4), None),
    ],
)
def test_positions_are_read_as_on_the_command_line(
    config: dict[str, str], start: StartPosition, stop: StopPosition | None
) -> None:
    read = read_from_streamhouse("t", **URLS, **config)  # type: ignore[arg-type]
    assert (read.start, read.stop) == (start, stop)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"start": "yesterday"}, "start 'yesterday' is not earliest, latest"),
        ({"stop": "earliest"}, "stop 'earliest' is not latest, offset:N or timestamp:MS"),
        ({"value_decoder": "json"}, "value_decoder must be 'utf-8' or 'bytes'"),
        ({"event_time": "log_append"}, "event_time must be 'record_time' or 'processing_time'"),
        (
            {"event_time": "processing_time", "max_out_of_orderness_seconds": 5},
            "max_out_of_orderness_seconds applies to event_time record_time",
        ),
        ({"poll_interval": -1.0}, "poll_interval must be >= 0 seconds"),
    ],
)
def test_bad_options_fail_naming_them(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        read_from_streamhouse("t", **URLS, **config)


def test_event_time_options_choose_the_policy() -> None:
    def policy(**config: Any) -> EventTimePolicy:
        policy: EventTimePolicy = read_from_streamhouse("t", **URLS, **config).config.event_time
        return policy

    assert policy() == EventTimePolicy.record_time()
    assert policy(max_out_of_orderness_seconds=30) == EventTimePolicy.bounded_out_of_orderness(30)
    assert policy(event_time="processing_time") == EventTimePolicy.processing_time()


def test_topics_are_comma_separated() -> None:
    assert read_from_streamhouse("a, b,,c", **URLS).topics == ["a", "b", "c"]


def test_a_yaml_pipeline_reads_rows_through_the_provider(tmp_path: pathlib.Path) -> None:
    write_topic(tmp_path, "t", [[b"a", b"b"], [b"c"]])
    locations = urls(tmp_path)
    spec = f"""
pipeline:
  type: chain
  transforms:
    - type: ReadFromStreamHouse
      config:
        topic: t
        metadata_url: "{locations["metadata_url"]}"
        storage_url: "{locations["storage_url"]}"
        start: offset:1
        stop: latest
providers:
  - include: "{PROVIDER}"
"""
    name = new_sink()
    pipeline = beam.Pipeline(runner=FnApiRunner())
    rows = yaml_transform.expand_pipeline(pipeline, spec)
    _ = (
        rows
        | beam.Map(lambda row: (row.partition, row.offset, row.value))
        | beam.ParDo(Collect(name))
    )
    pipeline.run().wait_until_finish()
    assert sorted(sink(name)) == [(0, 1, "b")]
