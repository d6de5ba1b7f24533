"""Object-store faults against a real S3 server: moto_server behind a fault-injecting proxy.

The proxy (``streamhouse_beam.testing.fault_proxy``) fails a seeded share of GETs with 500/503
answers, TCP resets, bodies cut short under a larger ``Content-Length`` and answers that
stall past the client's read timeout. The S3 store must retry every one of them and return
exactly the stored bytes; a bounded Beam read through the proxy must produce exactly the
records written, with the retries visible as a Beam counter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streamhouse_beam.errors import TransientStorageError
from streamhouse_beam.positions import StopPosition
from streamhouse_beam.storage import open_store
from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.servers import MotoServer

BUCKET = "faults"
OBJECT = bytes(range(256)) * 257  # 65,792 bytes: big enough to cut in half


@pytest.fixture(scope="module")
def moto(moto_server: MotoServer) -> MotoServer:
    """The session's moto_server (this module's buckets are its own)."""
    return moto_server


def _s3_options(moto: MotoServer, endpoint: str, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = dict(moto.credentials())
    options.update(
        endpoint_url=endpoint,
        read_timeout=0.5,
        connect_timeout=2,
        retry_attempts=12,
        retry_base_delay=0.01,
        retry_max_delay=0.05,
    )
    options.update(extra)
    return options


@pytest.fixture(scope="module")
def seeded(moto: MotoServer) -> str:
    store = open_store(f"s3://{BUCKET}", moto.credentials())
    store.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    store.put("org-1/data/t/0/00000000000000000000.seg", OBJECT)
    store.close()
    return "org-1/data/t/0/00000000000000000000.seg"


@pytest.mark.parametrize("fault", ["500", "503", "reset", "truncate", "slow"])
def test_each_fault_kind_is_retried_to_the_exact_bytes(
    moto: MotoServer, seeded: str, fault: str
) -> None:
    with FaultProxy(
        moto.endpoint_url, failure_rate=0.5, faults=[fault], seed=1, slow_seconds=1.5
    ) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url))
        for _ in range(6):
            assert store.get(seeded) == OBJECT
        assert store.get_range(seeded, 100, 5000) == OBJECT[100:5000]
        assert store.get_suffix(seeded, 32) == OBJECT[-32:]
        assert store.size(seeded) == len(OBJECT)
        injected = proxy.stats()[fault]
        assert injected > 0
        # Every injected fault cost exactly one retry (HEAD answers to size() that the proxy
        # cannot truncate become 500s, which are retried too).
        assert store.retry_count == proxy.stats()["injected"]
        store.close()


def test_thirty_percent_mixed_faults_still_return_exact_bytes(
    moto: MotoServer, seeded: str
) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=0.3, seed=42, slow_seconds=1.0) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url))
        for start in range(0, len(OBJECT), 8192):
            assert store.get_range(seeded, start, start + 8192) == OBJECT[start : start + 8192]
        stats = proxy.stats()
        assert stats["injected"] >= 1
        assert store.retry_count == stats["injected"]
        store.close()


def test_persistent_faults_exhaust_the_budget_with_an_error_naming_the_key(
    moto: MotoServer, seeded: str
) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=1.0, faults=["503", "reset"]) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url, retry_attempts=3))
        with pytest.raises(TransientStorageError) as info:
            store.get(seeded)
        assert info.value.key == seeded
        assert seeded in str(info.value)
        assert proxy.stats()["injected"] == 3
        store.close()


def test_truncated_bodies_are_never_returned_as_data(moto: MotoServer, seeded: str) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=1.0, faults=["truncate"]) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url, retry_attempts=2))
        with pytest.raises(TransientStorageError):
            store.get(seeded)
        assert proxy.stats()["truncate"] == 2
        store.close()


# --------------------------------------------------------------------------------------------
# A whole Beam pipeline reading through the faulty proxy
# --------------------------------------------------------------------------------------------

PIPE_BUCKET = "faults-pipeline"
PIPE_TOPIC = "clicks"
PARTITIONS = 3
PER_PARTITION = 90


@pytest.fixture(scope="module")
def s3_house(moto: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from streamhouse_beam.testing.local import LocalStreamHouse

    store = open_store(f"s3://{PIPE_BUCKET}", moto.credentials())
    store.client().create_bucket(Bucket=PIPE_BUCKET)  # type: ignore[attr-defined]
    db = tmp_path_factory.mktemp("faults-pipeline") / "metadata.db"
    with LocalStreamHouse(
        f"sqlite:///{db}", store, bucket=PIPE_BUCKET, segment_max_records=15
    ) as house:
        house.create_schema()
        house.create_topic(PIPE_TOPIC, partitions=PARTITIONS)
        for p in range(PARTITIONS):
            house.append(
                PIPE_TOPIC, p, [(f"k{i}", f"p{p}-v{i}") for i in range(PER_PARTITION)], flush=True
            )
        yield house


def _expected() -> list[tuple[int, int, bytes]]:
    return [(p, i, f"p{p}-v{i}".encode()) for p in range(PARTITIONS) for i in range(PER_PARTITION)]


def _run_read(house: Any, options: dict[str, Any], **read_args: Any) -> tuple[list[Any], Any]:
    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.testing.util import assert_that, equal_to

    from streamhouse_beam import beam as sh_beam

    expected = read_args.pop("expected")
    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    records = pipeline | sh_beam.ReadFromStreamHouse(
        PIPE_TOPIC,
        metadata_url=house.metadata_url,
        storage_url=f"s3://{PIPE_BUCKET}",
        storage_options=options,
        stop=StopPosition.latest(),
        max_poll_records=20,
        **read_args,
    )
    assert_that(records | beam.Map(lambda r: (r.partition, r.offset, r.value)), equal_to(expected))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("streamhouse"))["counters"]
    }
    return expected, counters


@pytest.mark.slow
def test_bounded_read_with_thirty_percent_faults_is_exact_and_counts_retries(
    moto: MotoServer, s3_house: Any
) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=0.3, seed=2026, slow_seconds=1.0) as proxy:
        # A fresh cache budget key: no segment may come from an earlier test's cache.
        _, counters = _run_read(
            s3_house,
            _s3_options(moto, proxy.url),
            expected=_expected(),
            cache_max_bytes=8 * 1024 * 1024 + 1,
        )
        stats = proxy.stats()
    assert stats["injected"] >= 3
    assert counters["records_read"] == PARTITIONS * PER_PARTITION
    # Every retry the store made is reported; each one answers an injected fault.
    assert 1 <= counters["storage_retries"] <= stats["injected"]


@pytest.mark.slow
def test_segment_deleted_from_s3_fails_the_pipeline_naming_the_lost_range(
    moto: MotoServer, s3_house: Any
) -> None:
    from streamhouse_beam.errors import DataLossError

    victim = s3_house.segments(PIPE_TOPIC, 1)[2]
    data = s3_house.store.get(victim.key)
    s3_house.store.delete(victim.key)
    try:
        with pytest.raises(Exception) as info:
            _run_read(
                s3_house,
                _s3_options(moto, moto.endpoint_url),
                expected=[],
                cache_max_bytes=8 * 1024 * 1024 + 2,
            )
        text = str(info.value)
        # Beam may wrap the worker's exception; the DataLossError's message survives.
        assert DataLossError.__name__ in text or isinstance(info.value, DataLossError)
        assert f"offsets {victim.base_offset}..{victim.end_offset}" in text
        assert f"topic {PIPE_TOPIC!r}, partition 1" in text
    finally:
        s3_house.store.put(victim.key, data)


@pytest.mark.slow
def test_skip_policy_reads_the_rest_and_counts_the_lost_range(
    moto: MotoServer, s3_house: Any, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="streamhouse_beam")
    victim = s3_house.segments(PIPE_TOPIC, 2)[1]
    data = s3_house.store.get(victim.key)
    s3_house.store.delete(victim.key)
    try:
        expected = [e for e in _expected() if not (e[0] == 2 and victim.contains(e[1]))]
        _, counters = _run_read(
            s3_house,
            _s3_options(moto, moto.endpoint_url),
            expected=expected,
            on_missing_segment="skip",
            cache_max_bytes=8 * 1024 * 1024 + 3,
        )
    finally:
        s3_house.store.put(victim.key, data)
    assert counters["lost_ranges"] == 1
    assert counters["records_read"] == len(expected)
    mentions = [r for r in caplog.records if victim.key in r.getMessage()]
    assert len(mentions) == 1, [r.getMessage() for r in mentions]
    assert f"{victim.base_offset}..{victim.end_offset}" in mentions[0].getMessage()


class _Collect:
    """Appends ``partition offset`` of each record to a file (what left the read, even on failure)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __call__(self, record: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(f"{record.partition} {record.offset}\n")


@pytest.mark.slow
def test_corrupt_segment_in_s3_fails_naming_the_key_and_is_never_emitted(
    moto: MotoServer, s3_house: Any, tmp_path: Any
) -> None:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from streamhouse_beam.beam import ReadFromStreamHouse

    victim = s3_house.segments(PIPE_TOPIC, 0)[3]
    original = s3_house.store.get(victim.key)
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0x40  # one flipped bit in the middle of the blocks
    s3_house.store.put(victim.key, bytes(damaged))
    out = tmp_path / "emitted.txt"
    try:
        pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
        _ = (
            pipeline
            | ReadFromStreamHouse(
                PIPE_TOPIC,
                metadata_url=s3_house.metadata_url,
                storage_url=f"s3://{PIPE_BUCKET}",
                storage_options=_s3_options(moto, moto.endpoint_url),
                stop=StopPosition.latest(),
                max_poll_records=5,
                cache_max_bytes=8 * 1024 * 1024 + 4,
            )
            | beam.Map(_Collect(str(out)))
        )
        with pytest.raises(Exception) as info:
            pipeline.run().wait_until_finish()
    finally:
        s3_house.store.put(victim.key, original)
    from streamhouse_beam.errors import CorruptSegmentError

    text = str(info.value)
    # FnApiRunner re-raises the worker's exception; other runners wrap it in text.
    assert isinstance(info.value, CorruptSegmentError) or "ChecksumMismatchError" in text
    assert victim.key in text
    emitted = [tuple(map(int, line.split())) for line in out.read_text().splitlines()]
    assert not [o for p, o in emitted if p == 0 and victim.contains(o)]


# --------------------------------------------------------------------------------------------
# Bodies damaged silently: delivered as a success, caught by a checksum
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["flip", "short"])
def test_silently_damaged_body_fails_s3s_checksum_and_is_fetched_again(
    moto: MotoServer, seeded: str, fault: str
) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=0.0) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url))
        proxy.inject(fault)
        # The object was uploaded with a CRC32 (botocore's default), which S3 returns with
        # every whole-object GET: botocore's check fails and the store fetches again.
        assert store.get(seeded) == OBJECT
        assert (proxy.stats()[fault], store.retry_count) == (1, 1)
        store.close()


def _strip_s3_checksums(house: Any, moto: MotoServer) -> None:
    """Re-upload every segment without an S3 checksum, as StreamHouse's own writer does."""
    import boto3
    from botocore.config import Config

    options = moto.credentials()
    client = boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        region_name=options["region_name"],
        aws_access_key_id=options["aws_access_key_id"],
        aws_secret_access_key=options["aws_secret_access_key"],
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
        ),
    )
    from streamhouse_beam.storage.keys import encode_key

    for p in range(PARTITIONS):
        for seg in house.segments(PIPE_TOPIC, p):
            data = house.store.get(seg.key)
            client.put_object(Bucket=PIPE_BUCKET, Key=encode_key(seg.key), Body=data)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["flip", "short"])
def test_damaged_segment_without_s3_checksum_is_refetched_once_by_the_reader(
    moto: MotoServer, s3_house: Any, fault: str
) -> None:
    _strip_s3_checksums(s3_house, moto)
    with FaultProxy(moto.endpoint_url, failure_rate=0.0) as proxy:
        # Nothing below S3 can tell: the segment's own CRC-32 and length checks catch it and
        # the reader fetches the object once more; the output is exact.
        proxy.inject(fault)
        _, counters = _run_read(
            s3_house,
            _s3_options(moto, proxy.url),
            expected=_expected(),
            cache_max_bytes=8 * 1024 * 1024 + (10 if fault == "flip" else 11),
        )
        assert proxy.stats()[fault] == 1
    assert counters["records_read"] == PARTITIONS * PER_PARTITION
    assert counters.get("storage_retries", 0) == 0


@pytest.mark.slow
def test_cli_read_through_faults_is_exact_reports_retries_and_shows_no_secret(
    moto: MotoServer,
    s3_house: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import base64
    import json
    import logging

    from streamhouse_beam.cli import main

    caplog.set_level(logging.INFO)
    # The CLI takes S3 settings from the standard environment, as a deployment would.
    for name, value in moto.env().items():
        monkeypatch.setenv(name, value)
    out, metrics = tmp_path / "out.jsonl", tmp_path / "metrics.json"
    with FaultProxy(
        moto.endpoint_url, failure_rate=0.2, faults=["500", "503", "reset", "truncate"], seed=9
    ) as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        status = main(
            [
                "read",
                "--metadata-url",
                s3_house.metadata_url,
                "--storage-url",
                f"s3://{PIPE_BUCKET}",
                "--topic",
                PIPE_TOPIC,
                "--stop",
                "latest",
                "--max-poll-records",
                "25",
                "--output",
                str(out),
                "--metrics-out",
                str(metrics),
            ]
        )
        injected = proxy.stats()["injected"]
    printed = capsys.readouterr()
    assert status == 0, printed.err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    got = sorted((r["partition"], r["offset"], base64.b64decode(r["value"])) for r in lines)
    assert got == _expected()
    counters = json.loads(metrics.read_text())
    assert injected >= 1
    assert 1 <= counters["storage_retries"] <= injected
    secret = MotoServer.SECRET_KEY
    for shown in (printed.out, printed.err, caplog.text, out.read_text(), metrics.read_text()):
        assert secret not in shown


@pytest.mark.slow
def test_tailing_read_through_faults_picks_up_new_segments_exactly_once(
    moto: MotoServer, tmp_path: Any
) -> None:
    import threading
    import time

    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from streamhouse_beam.beam import ReadFromStreamHouse
    from streamhouse_beam.testing.local import LocalStreamHouse

    bucket = "faults-tailing"
    store = open_store(f"s3://{bucket}", moto.credentials())
    store.client().create_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    first, later = 30, 30
    out = tmp_path / "out.txt"
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", store, bucket=bucket, segment_max_records=10
    ) as house:
        house.create_schema()
        house.create_topic("tail", partitions=1)
        house.append("tail", 0, [f"v{i}" for i in range(first)], flush=True)
        with FaultProxy(moto.endpoint_url, failure_rate=0.3, seed=5, slow_seconds=1.0) as proxy:
            pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
            _ = (
                pipeline
                | ReadFromStreamHouse(
                    "tail",
                    metadata_url=house.metadata_url,
                    storage_url=f"s3://{bucket}",
                    storage_options=_s3_options(moto, proxy.url),
                    max_records=first + later,
                    max_poll_records=5,
                    poll_interval=0.2,
                    cache_max_bytes=8 * 1024 * 1024 + 30,
                )
                | beam.Map(_Collect(str(out)))
            )
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    pipeline.run().wait_until_finish()
                except BaseException as exc:  # reported by the main thread
                    errors.append(exc)

            runner = threading.Thread(target=run, daemon=True)
            runner.start()
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and runner.is_alive():
                if out.exists() and len(out.read_text().splitlines()) >= first:
                    break
                time.sleep(0.05)
            # Caught up: new segments arrive while the read polls through the faulty proxy.
            for start in range(first, first + later, 10):
                house.append("tail", 0, [f"v{i}" for i in range(start, start + 10)], flush=True)
            runner.join(timeout=180)
            assert not runner.is_alive() and errors == [], errors
            assert proxy.stats()["injected"] >= 1
    offsets = [int(line.split()[1]) for line in out.read_text().splitlines()]
    assert sorted(offsets) == list(range(first + later))
