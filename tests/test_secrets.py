"""Credentials never leak: not in logs, exception messages (with their causes), repr(),
``display_data()`` or the CLI's output.

Each test plants a recognisable secret (an S3 secret key, a database password inside a
metadata URL, a schema-registry token), drives the component into its failure and logging
paths, and then greps everything that could be shown to a person for that secret.
"""

from __future__ import annotations

import contextlib
import io
import logging
import pickle
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from streamhouse_beam import errors
from streamhouse_beam.errors import (
    MetadataError,
    StorageError,
    StreamHouseError,
    redact,
)
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.testing.servers import free_port

S3_ACCESS_KEY = "AKIAPLANTEDACCESSKEY7"
S3_SECRET = "plantedS3SecretKey/abc+XYZ0123456789xyzw"
S3_TOKEN = "plantedSessionTokenQWERTY123"
DB_PASSWORD = "pl4nted-Db-Pa55w0rd"
REGISTRY_TOKEN = "plantedRegistryTokenZXCV987"

SECRETS = (S3_SECRET, S3_TOKEN, DB_PASSWORD, REGISTRY_TOKEN)


def _leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _everything_about(exc: BaseException) -> str:
    """The exception as a person could see it: str, repr, the full traceback with causes."""
    return "\n".join(
        [str(exc), repr(exc), "".join(traceback.format_exception(exc)), repr(exc.args)]
    )


class _Logs:
    """What a person could read in the logs: ours at any level, anyone's at INFO and above.

    botocore's DEBUG wire log prints request headers, including ``X-Amz-Security-Token``;
    that is the SDK's own choice (documented in docs/reliability.md), so third-party DEBUG
    records are left out of the check.
    """

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    @property
    def text(self) -> str:
        shown = [
            r
            for r in self._caplog.records
            if r.name.startswith("streamhouse_beam") or r.levelno >= logging.INFO
        ]
        return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in shown)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[_Logs]:
    """Capture every logger down to DEBUG for the whole test."""
    caplog.set_level(logging.DEBUG)
    yield _Logs(caplog)


def _closed_port_url() -> str:
    return f"postgresql://reader:{DB_PASSWORD}@127.0.0.1:{free_port()}/streamhouse"


# --------------------------------------------------------------------------------------------
# The redaction primitive and the error tree
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://reader:{DB_PASSWORD}@db:5432/sh",
        f"postgres://reader:{DB_PASSWORD}@db/sh?sslmode=require",
        f"host=db user=reader password={DB_PASSWORD} dbname=sh",
        f"aws_secret_access_key={S3_SECRET}",
        f"{{'aws_secret_access_key': '{S3_SECRET}'}}",
        f"Authorization: {REGISTRY_TOKEN}",
        f"{{'Authorization': 'Bearer {REGISTRY_TOKEN}'}}",
        f'{{"password": "{DB_PASSWORD}"}}',
        f"token={REGISTRY_TOKEN}&x=1",
        f"https://user:{REGISTRY_TOKEN}@registry.example/subjects",
        f"s3://AKIA:{S3_SECRET}@bucket",
    ],
)
def test_redact_removes_planted_secrets(text: str) -> None:
    assert _leaks(redact(text)) == []


def test_every_error_class_redacts_its_message() -> None:
    message = f"cannot open postgresql://u:{DB_PASSWORD}@h/db (password={DB_PASSWORD})"
    for name in errors.__all__:
        cls = getattr(errors, name)
        if not (isinstance(cls, type) and issubclass(cls, StreamHouseError)):
            continue
        if issubclass(cls, errors.DataLossError):
            exc: StreamHouseError = cls(
                message, topic="t", partition=0, start_offset=0, end_offset=1
            )
        elif issubclass(cls, errors.DecodeError):
            exc = cls(message, topic="t", partition=0, offset=0, raw=b"")
        elif issubclass(cls, errors.EventTimeError):
            exc = cls(message, topic="t", partition=0, offset=0)
        elif issubclass(cls, errors.NoCommittedOffsetError):
            exc = cls(message, TopicPartition("t", 0))
        elif issubclass(cls, errors.MissingExtraError):
            exc = cls(message, "s3", module="boto3")
        else:
            exc = cls(message)
        assert _leaks(_everything_about(exc)) == [], name
        # Beam ships errors between processes: the rebuilt one must stay clean too.
        assert _leaks(str(pickle.loads(pickle.dumps(exc)))) == [], name


# --------------------------------------------------------------------------------------------
# Object stores
# --------------------------------------------------------------------------------------------


def _s3_store(**extra: Any) -> Any:
    from streamhouse_beam.storage import open_store

    options = {
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "region_name": "us-east-1",
        "aws_access_key_id": S3_ACCESS_KEY,
        "aws_secret_access_key": S3_SECRET,
        "aws_session_token": S3_TOKEN,
        "addressing_style": "path",
        "connect_timeout": 0.5,
        "retry_attempts": 2,
        "retry_base_delay": 0.0,
    }
    options.update(extra)
    return open_store("s3://bucket", options)


def test_s3_store_repr_url_and_state_hide_the_keys() -> None:
    pytest.importorskip("boto3")
    store = _s3_store()
    shown = "\n".join([repr(store), str(store), store.url, repr(vars(store))])
    assert _leaks(shown) == []
    assert S3_ACCESS_KEY not in repr(store)


def test_s3_failure_does_not_echo_the_keys(all_logs: _Logs) -> None:
    pytest.importorskip("boto3")
    store = _s3_store()
    with pytest.raises(StorageError) as info:
        store.get("org-1/data/t/0/00000000000000000000.seg")
    assert _leaks(_everything_about(info.value)) == []
    assert _leaks(all_logs.text) == []
    store.close()


def test_storage_url_with_credentials_is_refused_without_echoing_them() -> None:
    from streamhouse_beam.storage import open_store

    with pytest.raises(ValueError) as info:
        open_store(f"s3://AKIA:{S3_SECRET}@bucket")
    assert _leaks(_everything_about(info.value)) == []


# --------------------------------------------------------------------------------------------
# Metadata stores
# --------------------------------------------------------------------------------------------


def test_metadata_store_repr_and_url_hide_the_password() -> None:
    pytest.importorskip("psycopg")
    from streamhouse_beam.metadata import open_metadata

    store = open_metadata(_closed_port_url(), retry_attempts=1)
    assert _leaks(repr(store)) == []
    assert _leaks(store.url) == []
    assert "reader" in store.url


def test_unreachable_postgres_error_hides_the_password(all_logs: _Logs) -> None:
    pytest.importorskip("psycopg")
    from streamhouse_beam.metadata import open_metadata

    store = open_metadata(
        _closed_port_url(), retry_attempts=2, retry_base_delay=0.0, connect_timeout=2
    )
    with pytest.raises(MetadataError) as info:
        store.list_topics()
    assert _leaks(_everything_about(info.value)) == []
    assert _leaks(all_logs.text) == []
    store.close()


def test_bad_metadata_url_error_hides_the_password() -> None:
    from streamhouse_beam.metadata import open_metadata

    with pytest.raises(ValueError) as info:
        open_metadata(f"mysql://reader:{DB_PASSWORD}@db/sh")
    assert _leaks(_everything_about(info.value)) == []


# --------------------------------------------------------------------------------------------
# The CLI
# --------------------------------------------------------------------------------------------


def _run_cli(argv: list[str]) -> tuple[int, str]:
    from streamhouse_beam.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse errors
            status = int(exc.code or 0)
    return status, out.getvalue() + err.getvalue()


def test_cli_topics_with_unreachable_postgres_hides_the_password(
    all_logs: _Logs,
) -> None:
    pytest.importorskip("psycopg")
    status, output = _run_cli(["topics", "--metadata-url", _closed_port_url()])
    assert status != 0
    assert output.strip()
    assert _leaks(output) == []
    assert _leaks(all_logs.text) == []


# --------------------------------------------------------------------------------------------
# The Beam transform: display_data(), repr(), the pipeline graph
# --------------------------------------------------------------------------------------------


def _transform(**extra: Any) -> Any:
    pytest.importorskip("apache_beam")
    from streamhouse_beam.beam import ReadFromStreamHouse
    from streamhouse_beam.positions import StopPosition

    return ReadFromStreamHouse(
        "orders",
        metadata_url=f"postgresql://reader:{DB_PASSWORD}@db.example:5432/streamhouse",
        storage_url="s3://bucket",
        storage_options={
            "aws_access_key_id": S3_ACCESS_KEY,
            "aws_secret_access_key": S3_SECRET,
            "aws_session_token": S3_TOKEN,
        },
        stop=StopPosition.latest(),
        **extra,
    )


def test_display_data_shows_the_configuration_without_secrets() -> None:
    from apache_beam.transforms.display import DisplayData

    transform = _transform()
    items = DisplayData.create_from(transform).items
    shown = "\n".join(f"{i.key}={i.value}" for i in items)
    assert "db.example" in shown and "aws_secret_access_key" in shown  # names, not values
    assert _leaks(shown) == []
    assert S3_ACCESS_KEY not in shown


def test_transform_its_settings_and_its_config_repr_hide_secrets() -> None:
    transform = _transform()
    shown = "\n".join(
        [repr(transform), str(transform), repr(transform.settings), repr(transform.config)]
    )
    assert _leaks(shown) == []


def test_pipeline_graph_text_hides_secrets() -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    _ = pipeline | _transform()
    proto = pipeline.to_runner_api()
    # Display data travels in the pipeline proto to every runner UI (Dataflow, Flink).
    display = [str(d) for t in proto.components.transforms.values() for d in t.display_data]
    assert _leaks("\n".join(display)) == []


@pytest.mark.parametrize("in_url", [False, True])
def test_schema_registry_token_never_shows(in_url: bool, all_logs: _Logs) -> None:
    from apache_beam.transforms.display import DisplayData

    from streamhouse_beam.decoders import SchemaRegistryDecoder

    port = free_port()  # nothing listens there: every fetch fails
    url = (
        f"http://registry-user:{REGISTRY_TOKEN}@127.0.0.1:{port}"
        if in_url
        else f"http://127.0.0.1:{port}"
    )
    decoder = SchemaRegistryDecoder(
        url, headers={"Authorization": f"Bearer {REGISTRY_TOKEN}"}, retries=0, timeout=1
    )
    assert _leaks(repr(decoder)) == []
    framed = b"\x00\x00\x00\x00\x07payload"
    with pytest.raises(StreamHouseError) as info:
        decoder.decode_record(framed, topic="t", partition=0, offset=0)
    assert _leaks(_everything_about(info.value)) == []
    transform = _transform(value_decoder=decoder)
    shown = "\n".join(f"{i.key}={i.value}" for i in DisplayData.create_from(transform).items)
    assert _leaks(shown) == []
    assert _leaks(all_logs.text) == []


def test_cli_read_with_unreachable_postgres_hides_the_password(
    all_logs: _Logs, tmp_path: Any
) -> None:
    pytest.importorskip("psycopg")
    out = tmp_path / "out.jsonl"
    status, output = _run_cli(
        [
            "read",
            "--metadata-url",
            _closed_port_url(),
            "--storage-url",
            "memory://secrets",
            "--topic",
            "t",
            "--stop",
            "latest",
            "--output",
            str(out),
            f"--metrics-out={tmp_path / 'metrics.json'}",
        ]
    )
    assert status != 0
    assert output.strip()
    assert _leaks(output) == []
    assert _leaks(all_logs.text) == []
    for written in tmp_path.iterdir():
        assert _leaks(written.read_text(errors="replace")) == [], written.name


def test_cli_read_refuses_a_storage_url_with_credentials_without_echoing_them(
    tmp_path: Any,
) -> None:
    status, output = _run_cli(
        [
            "read",
            "--metadata-url",
            f"sqlite:///{tmp_path}/none.db",
            "--storage-url",
            f"s3://AKIA:{S3_SECRET}@bucket",
            "--topic",
            "t",
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert status != 0
    assert _leaks(output) == []
