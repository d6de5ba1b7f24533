"""A feature whose optional dependency is missing fails when the transform is built, in one
line that names the extra to install, and as an error of the project's tree.

Each test hides the SDK the way an installation without the extra lacks it: ``None`` in
``sys.modules`` makes every ``import`` of it fail with ``ModuleNotFoundError``.
"""

from __future__ import annotations

import pathlib
import sys

import pytest

from streamhouse_beam import MissingExtraError, ReadFromStreamHouse, StopPosition, StreamHouseError
from streamhouse_beam.cli import main


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize(
    ("storage_url", "hidden", "extra"),
    [
        ("s3://streamhouse", ("boto3",), "s3"),
        (None, ("boto3",), "s3"),  # storage_url=None means s3://
        ("gs://streamhouse", ("google.cloud.storage",), "gcs"),
    ],
)
def test_a_storage_url_without_its_extra_fails_when_the_transform_is_built(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: pathlib.Path,
    storage_url: str | None,
    hidden: tuple[str, ...],
    extra: str,
) -> None:
    _hide(monkeypatch, *hidden)
    with pytest.raises(MissingExtraError) as info:
        ReadFromStreamHouse(
            "t",
            metadata_url=f"sqlite:///{tmp_path}/metadata.db",
            storage_url=storage_url,
            stop=StopPosition.latest(),
        )
    assert info.value.extra == extra
    assert f"pip install 'streamhouse-beam[{extra}]'" in str(info.value)
    assert isinstance(info.value, (StreamHouseError, ImportError))


def test_a_postgresql_url_without_its_extra_fails_when_the_transform_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    _hide(monkeypatch, "psycopg")
    with pytest.raises(MissingExtraError, match=r"pip install 'streamhouse-beam\[postgres\]'"):
        ReadFromStreamHouse(
            "t",
            metadata_url="postgresql://reader@127.0.0.1:1/streamhouse",
            storage_url=f"file://{tmp_path}",
        )


def test_avro_without_its_extra_names_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    from streamhouse_beam import AvroDecoder

    _hide(monkeypatch, "fastavro")
    with pytest.raises(MissingExtraError, match=r"streamhouse-beam\[avro\]"):
        AvroDecoder({"type": "string"})


def test_the_cli_names_the_extra_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.read_helpers import write_topic

    write_topic(tmp_path, "t", [[b"a"]])
    _hide(monkeypatch, "boto3")
    status = main(
        [
            "read",
            "--metadata-url",
            f"sqlite:///{tmp_path}/metadata.db",
            "--topic",
            "t",
            "--stop",
            "latest",
            "--output",
            str(tmp_path / "out.jsonl"),
        ]
    )
    assert status == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "MissingExtraError" in err and "pip install 'streamhouse-beam[s3]'" in err
