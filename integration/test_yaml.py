"""Beam YAML: the provider in ``transforms/streamhouse.yaml`` and the pipelines that use it.

Each test runs ``python -m apache_beam.yaml.main`` as a user would, on a topic written by
LocalStreamHouse, and checks the files the pipeline wrote.
"""

from __future__ import annotations

import collections
import datetime
import json
import pathlib
import subprocess

import pytest
from _scripts import run_python

from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS, LocalStreamHouse

pytestmark = [pytest.mark.slow]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
PROVIDER = REPO_ROOT / "transforms" / "streamhouse.yaml"
PAGE_COUNTS = REPO_ROOT / "transforms" / "pipelines" / "page_counts.yaml"
PAGES = ["/home", "/cart", "/pay", "/help"]


def _yaml_main(
    *args: str, cwd: pathlib.Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_python(
        "-m", "apache_beam.yaml.main", "--runner=FnApiRunner", *args, cwd=cwd, check=check
    )


def _clicks(root: pathlib.Path) -> tuple[LocalStreamHouse, dict[str, str]]:
    house = LocalStreamHouse(
        f"sqlite:///{root}/metadata.db", f"file://{root}/segments", segment_max_records=6
    )
    house.create_schema()
    house.create_topic("clicks", 3)
    for partition in range(3):
        records = []
        for i in range(17):
            page = PAGES[(i * (partition + 1)) % len(PAGES)]
            timestamp = DEFAULT_CLOCK_START_MS + i * 13_000 + partition * 1_000
            records.append((f"user{i % 5}", json.dumps({"page": page}), timestamp))
        house.append("clicks", partition, records, flush=True)
    variables = {
        "topic": "clicks",
        "metadata_url": house.metadata_url,
        "storage_url": f"file://{root}/segments",
    }
    return house, variables


def _window_start(ms: int) -> str:
    start = datetime.datetime.fromtimestamp(ms // 60_000 * 60, tz=datetime.timezone.utc)
    return start.strftime("%Y-%m-%dT%H:%M:%S")


def test_page_counts_pipeline_counts_clicks_per_page_and_minute(tmp_path: pathlib.Path) -> None:
    _, variables = _clicks(tmp_path)
    expected: collections.Counter[tuple[str, str]] = collections.Counter()
    for partition in range(3):
        for i in range(17):
            page = PAGES[(i * (partition + 1)) % len(PAGES)]
            ts = DEFAULT_CLOCK_START_MS + i * 13_000 + partition * 1_000
            expected[(_window_start(ts), page)] += 1

    out = tmp_path / "out" / "counts"
    _yaml_main(
        f"--yaml_pipeline_file={PAGE_COUNTS}",
        "--jinja_variables=" + json.dumps({**variables, "output": str(out)}),
        cwd=tmp_path,
    )
    got: collections.Counter[tuple[str, str]] = collections.Counter()
    for path in sorted(out.parent.glob("counts-*")):
        # WriteToJson names each window's file counts-<window start>-<window end>-...
        window = path.name[len("counts-") :][:19]
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            got[(window, row["page"])] += row["clicks"]
    assert got == expected


def test_provider_emits_schema_rows_with_every_record_field(tmp_path: pathlib.Path) -> None:
    house, variables = _clicks(tmp_path)
    out = tmp_path / "rows" / "rows"
    pipeline = f"""
pipeline:
  type: chain
  transforms:
    - type: ReadFromStreamHouse
      config:
        topic: {variables["topic"]}
        metadata_url: "{variables["metadata_url"]}"
        storage_url: "{variables["storage_url"]}"
        stop: latest
        max_poll_records: 5
        max_poll_bytes: 12
    - type: MapToFields
      config:
        language: python
        fields:
          topic: topic
          partition: partition
          offset: offset
          timestamp: timestamp
          key:
            callable: "lambda row: row.key.decode()"
          value: value
    - type: WriteToJson
      config:
        path: "{out}"
providers:
  - include: "{PROVIDER}"
"""
    _yaml_main(f"--yaml_pipeline={pipeline}", cwd=tmp_path)
    rows = [
        json.loads(line)
        for path in sorted(out.parent.glob("rows-*"))
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    expected = []
    for partition in range(3):
        for i in range(17):
            expected.append(
                {
                    "topic": "clicks",
                    "partition": partition,
                    "offset": i,
                    "timestamp": DEFAULT_CLOCK_START_MS + i * 13_000 + partition * 1_000,
                    "key": f"user{i % 5}",
                    "value": json.dumps({"page": PAGES[(i * (partition + 1)) % len(PAGES)]}),
                }
            )
    key = lambda row: (row["partition"], row["offset"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)
    house.close()


def test_provider_rejects_a_value_decoder_without_a_row_schema(tmp_path: pathlib.Path) -> None:
    _, variables = _clicks(tmp_path)
    pipeline = f"""
pipeline:
  type: chain
  transforms:
    - type: ReadFromStreamHouse
      config:
        topic: clicks
        metadata_url: "{variables["metadata_url"]}"
        storage_url: "{variables["storage_url"]}"
        stop: latest
        value_decoder: json
    - type: WriteToJson
      config:
        path: "{tmp_path}/never"
providers:
  - include: "{PROVIDER}"
"""
    proc = _yaml_main(f"--yaml_pipeline={pipeline}", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "value_decoder must be 'utf-8' or 'bytes'" in proc.stderr


def _policy_pipeline(variables: dict[str, str], out: pathlib.Path, event_time: str) -> str:
    return f"""
pipeline:
  type: chain
  transforms:
    - type: ReadFromStreamHouse
      config:
        topic: {variables["topic"]}
        metadata_url: "{variables["metadata_url"]}"
        storage_url: "{variables["storage_url"]}"
        stop: latest
{event_time}
    - type: MapToFields
      config:
        language: python
        fields:
          offset: offset
    - type: WindowInto
      windowing:
        type: fixed
        size: 60s
    - type: Combine
      config:
        group_by: []
        combine:
          n:
            value: offset
            fn: count
    - type: WriteToJson
      config:
        path: "{out}"
providers:
  - include: "{PROVIDER}"
"""


def _windows_written(out: pathlib.Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in sorted(out.parent.glob(f"{out.name}-*")):
        window = path.name[len(out.name) + 1 :][:19]
        for line in path.read_text(encoding="utf-8").splitlines():
            counts[window] = counts.get(window, 0) + json.loads(line)["n"]
    return counts


def test_provider_event_time_options_choose_the_rows_timestamps(tmp_path: pathlib.Path) -> None:
    _, variables = _clicks(tmp_path)
    bounded = tmp_path / "bounded" / "counts"
    _yaml_main(
        "--yaml_pipeline="
        + _policy_pipeline(
            variables,
            bounded,
            "        event_time: record_time\n        max_out_of_orderness_seconds: 30",
        ),
        cwd=tmp_path,
    )
    expected: collections.Counter[str] = collections.Counter()
    for partition in range(3):
        for i in range(17):
            expected[_window_start(DEFAULT_CLOCK_START_MS + i * 13_000 + partition * 1_000)] += 1
    assert _windows_written(bounded) == dict(expected)

    before = datetime.datetime.now(tz=datetime.timezone.utc)
    processing = tmp_path / "processing" / "counts"
    _yaml_main(
        "--yaml_pipeline="
        + _policy_pipeline(variables, processing, "        event_time: processing_time"),
        cwd=tmp_path,
    )
    after = datetime.datetime.now(tz=datetime.timezone.utc)
    got = _windows_written(processing)
    assert sum(got.values()) == 51
    allowed = {_window_start(int(t.timestamp() * 1000)) for t in (before, after)}
    assert set(got) <= allowed, (got, allowed)


def test_provider_refuses_an_unknown_event_time(tmp_path: pathlib.Path) -> None:
    _, variables = _clicks(tmp_path)
    proc = _yaml_main(
        "--yaml_pipeline="
        + _policy_pipeline(variables, tmp_path / "never", "        event_time: log_append"),
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "event_time must be 'record_time' or 'processing_time'" in proc.stderr
