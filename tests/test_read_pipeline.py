"""ReadFromStreamHouse / ReadAllFromStreamHouse pipelines on FnApiRunner (one worker)."""

from __future__ import annotations

import json
import pathlib

import apache_beam as beam
import pytest
from apache_beam.utils.timestamp import Timestamp

from streamhouse_beam import (
    AvroDecoder,
    DeadLetterRecord,
    PartitionDescriptor,
    ReadAllFromStreamHouse,
    ReadFromStreamHouse,
    StartPosition,
    StopPosition,
    StreamHouseRecord,
    StreamHouseRow,
    TopicPartition,
)
from streamhouse_beam.testing.local import DEFAULT_CLOCK_START_MS
from tests.read_helpers import Collect, local_streamhouse, new_sink, read_all, run, sink, urls

T0 = DEFAULT_CLOCK_START_MS


@pytest.fixture()
def store(tmp_path: pathlib.Path) -> pathlib.Path:
    """Topic ``orders`` (3 partitions x 30 records, 7-record segments) and ``audit`` (1 x 5)."""
    lsh = local_streamhouse(tmp_path, segment_max_records=7)
    lsh.create_topic("orders", 3)
    lsh.create_topic("audit", 1)
    for p in range(3):
        lsh.append("orders", p, [(f"k{i % 4}", f"o{p}-{i}") for i in range(30)], flush=True)
    lsh.append("audit", 0, [f"a{i}" for i in range(5)], flush=True)
    lsh.close()
    return tmp_path


def keyset(records: list[StreamHouseRecord]) -> list[tuple[str, int, int]]:
    return sorted((r.topic, r.partition, r.offset) for r in records)


def read(
    store: pathlib.Path, topics: object = "orders", **kwargs: object
) -> list[StreamHouseRecord]:
    kwargs.setdefault("stop", StopPosition.latest())
    return read_all(ReadFromStreamHouse(topics, **urls(store), **kwargs))  # type: ignore[arg-type]


def test_reads_every_record_of_every_partition_once(store: pathlib.Path) -> None:
    records = read(store, max_poll_records=4)
    assert keyset(records) == [("orders", p, o) for p in range(3) for o in range(30)]
    first = next(r for r in records if (r.partition, r.offset) == (1, 5))
    assert first == StreamHouseRecord("orders", 1, 5, T0 + 5, b"k1", b"o1-5")


def test_reads_several_topics(store: pathlib.Path) -> None:
    records = read(store, ["orders", "audit"])
    assert len(records) == 95
    assert sorted(r.value for r in records if r.topic == "audit") == [
        b"a0",
        b"a1",
        b"a2",
        b"a3",
        b"a4",
    ]


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (StartPosition.earliest(), StopPosition.latest(), range(0, 30)),
        (StartPosition.latest(), StopPosition.latest(), range(0)),
        (StartPosition.offsets({1: 10}), StopPosition.latest(), range(10, 30)),
        (StartPosition.offsets({("orders", 1): 3}), StopPosition.offsets({1: 9}), range(3, 9)),
        (StartPosition.timestamp(T0 + 12), StopPosition.timestamp(T0 + 20), range(12, 20)),
        (StartPosition.earliest(), StopPosition.offsets({1: 17}), range(0, 17)),
        (StartPosition.timestamp(T0 + 25), StopPosition.latest(), range(25, 30)),
        (StartPosition.committed("g1"), StopPosition.latest(), range(0, 30)),
        (StartPosition.committed("g2"), StopPosition.latest(), range(21, 30)),
        (StartPosition.committed("g1", fallback="latest"), StopPosition.latest(), range(0)),
    ],
    ids=lambda v: v.describe() if hasattr(v, "describe") else None,
)
def test_start_and_stop_positions(
    store: pathlib.Path, start: StartPosition, stop: StopPosition, expected: range
) -> None:
    lsh = local_streamhouse_existing(store)
    lsh.commit("g2", {("orders", 1): 21})
    records = read(store, start=start, stop=stop, max_poll_records=5)
    assert sorted(r.offset for r in records if r.partition == 1) == list(expected)


def local_streamhouse_existing(tmp: pathlib.Path):  # type: ignore[no-untyped-def]
    from streamhouse_beam.metadata import open_metadata
    from streamhouse_beam.testing.local import LocalStreamHouse

    org = open_metadata(f"sqlite:///{tmp}/metadata.db").organization_id
    return LocalStreamHouse(
        f"sqlite:///{tmp}/metadata.db", f"file://{tmp}/segments", organization_id=org
    )


def test_stop_beyond_readable_end_waits_for_records(
    store: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    # A stop offset above the high watermark tails until it is reached: records appended
    # while the pipeline runs complete it.
    import threading
    import time

    lsh = local_streamhouse_existing(store)

    def append_later() -> None:
        time.sleep(0.5)
        lsh.append("audit", 0, ["late-1", "late-2"], flush=True)

    thread = threading.Thread(target=append_later)
    thread.start()
    records = read(store, "audit", stop=StopPosition.offsets({0: 7}), poll_interval=0.1)
    thread.join()
    assert [r.value for r in sorted(records, key=lambda r: r.offset)][-2:] == [b"late-1", b"late-2"]


def test_gaps_and_compacted_segments_are_skipped(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path, segment_max_records=100)
    lsh.create_topic("gappy", 1)
    # Offsets 0-4, then a compacted segment holding 10, 12, 15, then 20-22 after a hole.
    lsh.write_segment("gappy", 0, [(o, T0 + o, None, b"v%d" % o) for o in range(5)])
    lsh.write_segment("gappy", 0, [(o, T0 + o, None, b"v%d" % o) for o in (10, 12, 15)])
    lsh.write_segment("gappy", 0, [(o, T0 + o, None, b"v%d" % o) for o in (20, 21, 22)])
    records = read(tmp_path, "gappy", max_poll_records=2)
    assert sorted(r.offset for r in records) == [0, 1, 2, 3, 4, 10, 12, 15, 20, 21, 22]


@pytest.mark.parametrize("compression", ["lz4", "none"])
@pytest.mark.parametrize("org_prefix", [True, False])
def test_multi_block_segments_compression_and_key_layouts(
    tmp_path: pathlib.Path, compression: str, org_prefix: bool
) -> None:
    lsh = local_streamhouse(
        tmp_path,
        compression=compression,
        org_prefix=org_prefix,
        block_size_target=256,
        segment_max_records=500,
    )
    lsh.create_topic("big", 2)
    for p in range(2):
        lsh.append("big", p, [(b"key", b"x" * 40 + b"%d" % i) for i in range(300)], flush=True)
    records = read(tmp_path, "big", max_poll_records=64)
    assert len(records) == 600 and len(set(keyset(records))) == 600
    assert all(r.value.startswith(b"x" * 40) for r in records)  # type: ignore[union-attr]


def test_event_timestamps_are_record_milliseconds(store: pathlib.Path) -> None:
    name = new_sink()
    run(
        lambda p: (
            p
            | ReadFromStreamHouse("audit", **urls(store), stop=StopPosition.latest())
            | beam.ParDo(Collect(name, with_timestamps=True))
        )
    )
    assert sorted(ts for _, ts in sink(name)) == [
        Timestamp(micros=(T0 + i) * 1000) for i in range(5)
    ]


def test_value_decoders(tmp_path: pathlib.Path) -> None:
    import io

    import fastavro

    schema = {"type": "record", "name": "R", "fields": [{"name": "n", "type": "int"}]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"n": 7})
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("j", 1)
    lsh.create_topic("a", 1)
    lsh.append("j", 0, [json.dumps({"i": i}) for i in range(3)], flush=True)
    lsh.append("a", 0, [buf.getvalue()], flush=True)
    assert sorted(r.value["i"] for r in read(tmp_path, "j", value_decoder="json")) == [0, 1, 2]  # type: ignore[index]
    assert [r.value for r in read(tmp_path, "a", value_decoder=AvroDecoder(schema))] == [{"n": 7}]
    assert sorted(r.value for r in read(tmp_path, "j", value_decoder="utf-8"))[0] == '{"i": 0}'


def test_undecodable_records_go_to_the_dead_letter_output(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("mixed", 1)
    lsh.append("mixed", 0, ['{"ok": 1}', "{broken", '{"ok": 2}'], flush=True)
    good, bad = new_sink(), new_sink()

    def build(p: beam.Pipeline) -> None:
        result = p | ReadFromStreamHouse(
            "mixed",
            **urls(tmp_path),
            stop=StopPosition.latest(),
            value_decoder="json",
            dead_letter=True,
        )
        result.records | "good" >> beam.ParDo(Collect(good))
        result.dead_letter | "bad" >> beam.ParDo(Collect(bad))

    run(build)
    assert sorted(r.value["ok"] for r in sink(good)) == [1, 2]
    [dead] = sink(bad)
    assert isinstance(dead, DeadLetterRecord)
    assert (dead.topic, dead.partition, dead.offset, dead.value) == ("mixed", 0, 1, b"{broken")
    assert "not valid JSON" in dead.reason


def test_undecodable_record_fails_the_pipeline_naming_it(tmp_path: pathlib.Path) -> None:
    lsh = local_streamhouse(tmp_path)
    lsh.create_topic("mixed", 1)
    lsh.append("mixed", 0, ['{"ok": 1}', "{broken"], flush=True)
    with pytest.raises(Exception, match="'mixed' partition 0 offset 1"):
        read(tmp_path, "mixed", value_decoder="json")


def test_rows_output_has_a_schema_usable_downstream(store: pathlib.Path) -> None:
    name = new_sink()

    def build(p: beam.Pipeline) -> None:
        rows = p | ReadFromStreamHouse(
            "audit", **urls(store), stop=StopPosition.latest(), output="rows"
        )
        assert rows.element_type is StreamHouseRow
        (
            rows
            | beam.Select(value=lambda r: r.value, offset=lambda r: r.offset)
            | beam.ParDo(Collect(name))
        )

    run(build)
    assert sorted((r.offset, r.value) for r in sink(name)) == [(i, b"a%d" % i) for i in range(5)]


def test_read_all_takes_descriptors_and_topic_partitions(store: pathlib.Path) -> None:
    name = new_sink()
    elements = [
        PartitionDescriptor("orders", 2, StartPosition.offsets({2: 25}), StopPosition.latest()),
        TopicPartition("audit", 0),
    ]
    run(
        lambda p: (
            p
            | beam.Create(elements)
            | ReadAllFromStreamHouse(**urls(store), stop=StopPosition.offsets({0: 2}))
            | beam.ParDo(Collect(name))
        )
    )
    assert keyset(sink(name)) == [("audit", 0, 0), ("audit", 0, 1)] + [
        ("orders", 2, o) for o in range(25, 30)
    ]


def test_max_records_bounds_a_bounded_read(store: pathlib.Path) -> None:
    assert len(read(store, max_records=13, max_poll_records=4)) == 13


def test_missing_topic_fails_with_its_name(store: pathlib.Path) -> None:
    with pytest.raises(Exception, match="nope"):
        read(store, "nope")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"topics": []}, ValueError, "topics"),
        ({"topics": ["a", "a"]}, ValueError, "twice"),
        ({"metadata_url": "mysql://x"}, ValueError, "metadata_url"),
        ({"storage_url": "ftp://x"}, ValueError, "storage_url"),
        ({"max_poll_records": 0}, ValueError, "max_poll_records"),
        ({"max_records": "5"}, TypeError, "max_records"),
        ({"poll_interval": -1}, ValueError, "poll_interval"),
        ({"output": "batches!"}, ValueError, "output"),
        ({"value_decoder": "yaml"}, ValueError, "yaml"),
        ({"output": "rows", "value_decoder": "json"}, ValueError, "rows"),
        ({"start": "earliest"}, TypeError, "start"),
        ({"on_missing_segment": "ignore"}, ValueError, "on_missing_segment"),
        ({"commit_offsets_group": ""}, ValueError, "commit_offsets_group"),
        ({"storage_options": {"nonsense": 1}}, ValueError, "nonsense"),
    ],
)
def test_invalid_arguments_fail_at_construction(
    kwargs: dict[str, object], error: type, match: str
) -> None:
    args: dict[str, object] = {
        "topics": "t",
        "metadata_url": "sqlite:////tmp/x.db",
        "storage_url": "file:///tmp/x",
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ReadFromStreamHouse(args.pop("topics"), **args)  # type: ignore[arg-type]


def test_display_data_shows_configuration_without_secrets() -> None:
    from apache_beam.transforms.display import DisplayData

    transform = ReadFromStreamHouse(
        "t",
        metadata_url="postgresql://reader:hunter2@db:5432/sh",
        storage_url="s3://bucket",
        storage_options={"aws_secret_access_key": "s3cr3t", "endpoint_url": "http://x"},
        commit_offsets_group="g",
    )
    items = {item.key: str(item.value) for item in DisplayData.create_from(transform).items}
    assert items["topics"] == "t" and items["commit_offsets_group"] == "g"
    shown = " ".join(items.values())
    assert "hunter2" not in shown and "s3cr3t" not in shown
    assert "aws_secret_access_key" in items["storage_options"]


def test_each_application_of_a_transform_has_its_own_max_records_budget(
    store: pathlib.Path,
) -> None:
    transform = ReadFromStreamHouse(
        "orders", **urls(store), stop=StopPosition.latest(), max_records=7
    )
    name = new_sink()

    def build(p: beam.Pipeline) -> None:
        (p | "A" >> transform) | "CollectA" >> beam.ParDo(Collect(name))
        (p | "B" >> transform) | "CollectB" >> beam.ParDo(Collect(name))

    run(build)
    assert len(sink(name)) == 14


def test_kv_output_yields_key_value_pairs_like_read_from_kafka(store: pathlib.Path) -> None:
    pairs = read(store, "orders", output="kv", stop=StopPosition.offsets({0: 2, 1: 0, 2: 0}))
    assert sorted(pairs) == [(b"k0", b"o0-0"), (b"k1", b"o0-1")]
