"""The settings model: each setting's default and check in one place, and every way of building a
read (``ReadFromStreamHouse``, ``ReadAllFromStreamHouse``, the ``read`` command, the YAML
provider) ending with the same settings when given the same options.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import pathlib
import pickle
import subprocess
import sys
import uuid
from typing import Any

import pytest

from streamhouse_beam import (
    EventTimePolicy,
    MissingExtraError,
    ReadAllFromStreamHouse,
    ReadFromStreamHouse,
    StartPosition,
    StopPosition,
)
from streamhouse_beam.beam._descriptors import ReadConfig
from streamhouse_beam.beam.yaml_provider import read_from_streamhouse
from streamhouse_beam.cli import build_parser
from streamhouse_beam.cli._read import build_read
from streamhouse_beam.decoders import JsonDecoder
from streamhouse_beam.settings import (
    DEFAULT_MAX_POLL_RECORDS,
    OutputSettings,
    PollSettings,
    ReadOptions,
    ReadSettings,
    SourceSettings,
)

REPO = pathlib.Path(__file__).resolve().parents[1]
METADATA_URL = "sqlite:////tmp/streamhouse-settings-test/metadata.db"
STORAGE_URL = "file:///tmp/streamhouse-settings-test/segments"


def _source(**given: Any) -> SourceSettings:
    return SourceSettings(**{"metadata_url": METADATA_URL, **given})


def _comparable(config: ReadConfig) -> dict[str, Any]:
    """A config's fields, the decoder by its repr (decoders do not compare) and no run id."""
    shown = {field.name: getattr(config, field.name) for field in dataclasses.fields(config)}
    shown["decoder"] = repr(shown["decoder"])
    del shown["run_id"]
    return shown


# ------------------------------------------------------------------------- defaults, once


def test_every_transform_argument_belongs_to_exactly_one_group() -> None:
    groups = ReadSettings.argument_groups()
    assert set(groups.values()) == {"source", "polling", "output", "reader"}
    parameters = inspect.signature(ReadFromStreamHouse.__init__).parameters
    assert set(parameters) - {"self", "topics"} == set(groups)


def test_the_transform_signature_defaults_are_the_model_defaults() -> None:
    # Each default in ReadFromStreamHouse's signature is the field default it refers to, or
    # (storage_options, metadata_options: None, "no options") builds the same settings.
    parameters = inspect.signature(ReadFromStreamHouse.__init__).parameters
    defaults = ReadSettings.defaults()
    assert set(defaults) == set(ReadSettings.argument_groups()) - {"metadata_url"}
    built_by_default = ReadSettings.from_arguments({"metadata_url": METADATA_URL})
    for name, default in defaults.items():
        given = parameters[name].default
        if name in ("storage_options", "metadata_options"):
            assert given is None and default == ()
        else:
            assert given is default, name
        built = ReadSettings.from_arguments({"metadata_url": METADATA_URL, name: given})
        assert built == built_by_default, name


def test_the_model_states_the_defaults() -> None:
    settings = ReadSettings(_source())
    assert settings == ReadSettings.from_arguments({"metadata_url": METADATA_URL})
    source, polling, output = settings.source, settings.polling, settings.output
    assert source.storage_url == "s3://"
    assert source.start == StartPosition.earliest() and source.stop is None
    assert source.partition_discovery_interval == 30.0
    assert (polling.max_poll_records, polling.max_poll_bytes) == (None, None)
    assert polling.limits("records") == (DEFAULT_MAX_POLL_RECORDS, None)
    assert (polling.max_poll_seconds, polling.poll_interval, polling.max_delay_seconds) == (
        10.0,
        1.0,
        60.0,
    )
    assert output.output == "records" and output.decoder.name == "bytes"
    assert output.event_time is None and output.dead_letter is False
    assert settings.reader == ReadOptions()


def _read_from(**given: Any) -> ReadConfig:
    config: ReadConfig = ReadFromStreamHouse(
        "t", metadata_url=METADATA_URL, storage_url=STORAGE_URL, **given
    ).config
    return config


def test_read_all_takes_the_same_settings_with_the_same_defaults() -> None:
    one = _comparable(_read_from())
    many = _comparable(
        ReadAllFromStreamHouse(metadata_url=METADATA_URL, storage_url=STORAGE_URL).config
    )
    # ReadAll discovers no partitions: its input names them.
    assert many.pop("partition_discovery_interval") == 0.0
    one.pop("partition_discovery_interval")
    assert many == one
    # It takes every other argument of ReadFromStreamHouse, by keyword.
    expected = ReadSettings.from_arguments(
        {"metadata_url": METADATA_URL, "partition_discovery_interval": 0.0}
    )
    for name, default in ReadSettings.defaults().items():
        if name != "partition_discovery_interval":
            read_all = ReadAllFromStreamHouse(metadata_url=METADATA_URL, **{name: default})
            assert read_all.settings == expected, name
    with pytest.raises(
        TypeError, match=r"ReadAllFromStreamHouse got unexpected arguments \['nope'\]"
    ):
        ReadAllFromStreamHouse(metadata_url=METADATA_URL, nope=1)
    with pytest.raises(TypeError, match="partition_discovery_interval do not apply"):
        ReadAllFromStreamHouse(metadata_url=METADATA_URL, partition_discovery_interval=5)


def _cli_read(*options: str) -> Any:
    args, _ = build_parser().parse_known_args(
        [
            "read",
            "--metadata-url",
            METADATA_URL,
            "--storage-url",
            STORAGE_URL,
            "--topic",
            "t",
            *options,
        ]
    )
    return build_read(args)


def test_the_command_line_reads_with_the_model_defaults() -> None:
    assert _comparable(_cli_read().config) == _comparable(_read_from())
    given = _cli_read(
        "--start",
        "offset:3",
        "--stop",
        "timestamp:9",
        "--max-records",
        "7",
        "--max-poll-records",
        "11",
        "--max-poll-bytes",
        "13",
        "--poll-interval",
        "0.5",
    )
    assert _comparable(given.config) == _comparable(
        _read_from(
            start=StartPosition.offsets({}, default=3),
            stop=StopPosition.timestamp(9),
            max_records=7,
            max_poll_records=11,
            max_poll_bytes=13,
            poll_interval=0.5,
        )
    )


def test_the_yaml_provider_reads_with_the_model_defaults_but_text_rows() -> None:
    yaml_read = read_from_streamhouse("t", METADATA_URL, STORAGE_URL)
    # What the YAML provider chooses on purpose: schema rows with text values.
    assert _comparable(yaml_read.config) == _comparable(
        _read_from(output="rows", value_decoder="utf-8")
    )
    assert yaml_read.config.event_time == EventTimePolicy.record_time()


# ------------------------------------------------------------------------- the checks


@pytest.mark.parametrize(
    ("group", "given", "error", "match"),
    [
        (
            SourceSettings,
            {"metadata_url": 5},
            TypeError,
            "metadata_url must be a non-empty str, got 5",
        ),
        (SourceSettings, {"metadata_url": "mysql://x"}, ValueError, "metadata_url .*'mysql://x'"),
        (SourceSettings, {"storage_url": "bucket"}, ValueError, "storage_url .*'bucket'"),
        (SourceSettings, {"storage_url": "ftp://x"}, ValueError, "storage_url scheme .*'ftp://x'"),
        (SourceSettings, {"organization_id": ""}, ValueError, "organization_id .*got ''"),
        (SourceSettings, {"organization_id": 7}, ValueError, "organization_id .*got 7"),
        (
            SourceSettings,
            {"storage_options": ["a"]},
            TypeError,
            "storage_options must be a mapping, got list",
        ),
        (
            SourceSettings,
            {"storage_options": {1: 2}},
            TypeError,
            "storage_options keys must be str, got 1",
        ),
        (SourceSettings, {"storage_options": {"nonsense": 1}}, ValueError, "nonsense"),
        (
            SourceSettings,
            {"metadata_options": "x"},
            TypeError,
            "metadata_options must be a mapping, got str",
        ),
        (
            SourceSettings,
            {"start": "earliest"},
            TypeError,
            "start must be a StartPosition, got str",
        ),
        (
            SourceSettings,
            {"stop": "latest"},
            TypeError,
            "stop must be a StopPosition or None, got str",
        ),
        (SourceSettings, {"max_records": 0}, ValueError, "max_records must be > 0, got 0"),
        (
            SourceSettings,
            {"max_records": "5"},
            TypeError,
            "max_records must be an int, got str '5'",
        ),
        (SourceSettings, {"commit_offsets_group": ""}, ValueError, "commit_offsets_group .*got ''"),
        (
            SourceSettings,
            {"partition_discovery_interval": -1},
            ValueError,
            "partition_discovery_interval must be >= 0 seconds, got -1",
        ),
        (PollSettings, {"max_poll_records": 0}, ValueError, "max_poll_records must be > 0, got 0"),
        (
            PollSettings,
            {"max_poll_records": 1.5},
            TypeError,
            "max_poll_records must be None or an int, got float 1.5",
        ),
        (
            PollSettings,
            {"max_poll_bytes": True},
            TypeError,
            "max_poll_bytes must be None or an int, got bool True",
        ),
        (
            PollSettings,
            {"max_poll_seconds": 0},
            ValueError,
            "max_poll_seconds must be > 0 seconds, got 0",
        ),
        (
            PollSettings,
            {"poll_interval": float("nan")},
            ValueError,
            "poll_interval must be >= 0 seconds, got nan",
        ),
        (
            PollSettings,
            {"poll_interval": "1"},
            TypeError,
            "poll_interval must be a number of seconds, got str '1'",
        ),
        (
            PollSettings,
            {"max_delay_seconds": -2},
            ValueError,
            "max_delay_seconds must be >= 0 seconds, got -2",
        ),
        (PollSettings, {"cache_max_bytes": 0}, ValueError, "cache_max_bytes must be > 0, got 0"),
        (
            PollSettings,
            {"cache_max_bytes": True},
            TypeError,
            "cache_max_bytes must be an int, got bool True",
        ),
        (
            PollSettings,
            {"prefetch_workers": -1},
            ValueError,
            "prefetch_workers must be >= 0, got -1",
        ),
        (
            PollSettings,
            {"prefetch_workers": 2.0},
            TypeError,
            "prefetch_workers must be an int, got float 2.0",
        ),
        (PollSettings, {"spill_dir": 5}, TypeError, "spill_dir must be None or a str path, got 5"),
        (
            OutputSettings,
            {"output": "table"},
            ValueError,
            "output must be one of records, rows, kv, batches, got 'table'",
        ),
        (OutputSettings, {"dead_letter": 1}, TypeError, "dead_letter must be a bool, got 1"),
        (
            OutputSettings,
            {"value_decoder": "yaml"},
            ValueError,
            "value_decoder 'yaml' is not known",
        ),
        (
            OutputSettings,
            {"value_decoder": 5},
            TypeError,
            "value_decoder must be a name, .* got int",
        ),
        (
            OutputSettings,
            {"output": "rows", "value_decoder": "json"},
            ValueError,
            "output='rows' .*JsonDecoder",
        ),
        (
            OutputSettings,
            {"output": "batches", "value_decoder": "utf-8"},
            ValueError,
            "output='batches' .*Utf8Decoder",
        ),
        (
            OutputSettings,
            {"event_time": 5.0},
            TypeError,
            "event_time must be an EventTimePolicy .* got float 5.0",
        ),
        (ReadOptions, {"verify_crc": "yes"}, TypeError, "verify_crc must be a bool, got 'yes'"),
        (ReadOptions, {"range_reads": 1}, TypeError, "range_reads must be a bool, got 1"),
        (
            ReadOptions,
            {"prefetch_threshold": "0.5"},
            TypeError,
            "prefetch_threshold must be a number, got '0.5'",
        ),
        (
            ReadOptions,
            {"prefetch_threshold": 1.5},
            ValueError,
            r"prefetch_threshold must be within \[0, 1\], got 1.5",
        ),
        (
            ReadOptions,
            {"prefetch_segments": -1},
            ValueError,
            "prefetch_segments must be >= 0, got -1",
        ),
        (
            ReadOptions,
            {"prefetch_segments": 1.5},
            TypeError,
            "prefetch_segments must be an int, got 1.5",
        ),
        (
            ReadOptions,
            {"on_missing_segment": "ignore"},
            ValueError,
            "on_missing_segment must be 'fail' or 'skip', got 'ignore'",
        ),
    ],
)
def test_each_setting_is_checked_naming_it_and_the_value(
    group: type, given: dict[str, Any], error: type[Exception], match: str
) -> None:
    build = _source if group is SourceSettings else group
    with pytest.raises(error, match=match):
        build(**given)
    # The transforms check through the same model, with the same error.
    with pytest.raises(error, match=match):
        ReadFromStreamHouse(
            "t", **{"metadata_url": METADATA_URL, "storage_url": STORAGE_URL, **given}
        )


def test_a_timestamp_function_is_refused_with_batches() -> None:
    policy = EventTimePolicy.from_record(lambda record: record.timestamp)
    with pytest.raises(ValueError, match=r"from_record.*output='batches'"):
        OutputSettings(output="batches", event_time=policy)
    assert OutputSettings(output="records", event_time=policy).event_time is policy


def test_batches_without_pyarrow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(MissingExtraError, match=r"streamhouse-beam\[arrow\]"):
        OutputSettings(output="batches")


def test_unknown_arguments_are_refused_naming_the_caller() -> None:
    with pytest.raises(
        TypeError, match=r"ReadFromStreamHouse got unexpected arguments \['max_prefetch_segments'\]"
    ):
        ReadSettings.from_arguments(
            {"metadata_url": METADATA_URL, "max_prefetch_segments": 3}, where="ReadFromStreamHouse"
        )


# ------------------------------------------------------------------- normalized once, kept


def test_values_are_kept_in_one_canonical_form(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    org = uuid.uuid4()
    source = SourceSettings(
        metadata_url="sqlite:///rel/metadata.db",
        storage_url=None,  # type: ignore[arg-type]
        organization_id=org,  # type: ignore[arg-type]
        storage_options={"region_name": "eu", "endpoint_url": "http://x"},  # type: ignore[arg-type]
        partition_discovery_interval=None,  # type: ignore[arg-type]
    )
    assert source.metadata_url == f"sqlite:///{tmp_path}/rel/metadata.db"
    assert source.storage_url == "s3://"
    assert source.organization_id == str(org)
    assert source.storage_options == (("endpoint_url", "http://x"), ("region_name", "eu"))
    assert source.partition_discovery_interval == 0.0
    polling = PollSettings(max_poll_seconds=3, poll_interval=0, max_delay_seconds=1)
    assert [
        type(v)
        for v in (polling.max_poll_seconds, polling.poll_interval, polling.max_delay_seconds)
    ] == [float] * 3
    assert ReadOptions(prefetch_threshold=1).prefetch_threshold == 1.0
    decoder = JsonDecoder()
    output = OutputSettings(value_decoder=decoder)
    assert output.value_decoder is decoder and output.decoder is decoder
    assert OutputSettings(value_decoder="utf-8").decoder.name == "utf-8"


def test_settings_are_frozen_picklable_and_rechecked_when_replaced() -> None:
    settings = ReadSettings.from_arguments(
        {
            "metadata_url": METADATA_URL,
            "storage_options": {"region_name": "eu"},
            "value_decoder": "json",
        }
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.polling.poll_interval = 5.0  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(settings)) == settings
    assert pickle.loads(pickle.dumps(settings)).output.decoder.name == "json"
    moved = dataclasses.replace(settings.source, storage_url="s3://other")
    assert moved.storage_options == settings.source.storage_options
    with pytest.raises(ValueError, match="poll_interval"):
        dataclasses.replace(settings.polling, poll_interval=-1)


def test_source_settings_repr_hides_credentials() -> None:
    source = SourceSettings(
        metadata_url="postgresql://reader:hunter2@db:5432/sh",
        storage_url="s3://bucket",
        storage_options={"aws_secret_access_key": "s3cr3t"},  # type: ignore[arg-type]
    )
    shown = repr(ReadSettings(source))
    assert "hunter2" not in shown and "s3cr3t" not in shown
    assert "aws_secret_access_key" in shown and "db:5432" in shown


def test_the_settings_module_does_not_import_beam() -> None:
    # The command line builds its parser (and its defaults) from it without loading Beam.
    code = (
        "import sys, streamhouse_beam.settings as s\n"
        "s.ReadSettings(s.SourceSettings('sqlite:////tmp/x.db', storage_url='file:///tmp'))\n"
        "from streamhouse_beam.cli import build_parser; build_parser()\n"
        "assert 'apache_beam' not in sys.modules, 'apache_beam imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=REPO)
