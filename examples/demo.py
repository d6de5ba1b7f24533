"""The README's first command (``make demo``): read a local StreamHouse topic with Apache Beam.

1. Builds a StreamHouse store under ``./demo-data`` (recreated on every run) exactly as
   StreamHouse lays it out: a SQLite metadata database and a directory of LZ4 segment files,
   written with :class:`~streamhouse_beam.testing.local.LocalStreamHouse`. The topic ``clicks``
   has 4 partitions of JSON click events (key = user id) spread over 10 minutes of event time.
2. Runs a bounded Beam pipeline on FnApiRunner:
   ``ReadFromStreamHouse -> page per click -> 2-minute event-time windows -> count per page``.
3. Prints the counts per window and page, and the connector's counters.
"""

from __future__ import annotations

import json
import pathlib
import random
import shutil
import sys

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.transforms.window import FixedWindows

from streamhouse_beam import ReadFromStreamHouse, StopPosition
from streamhouse_beam.testing.local import LocalStreamHouse

DATA = pathlib.Path("demo-data").resolve()
METADATA_URL = f"sqlite:///{DATA}/metadata.db"
STORAGE_URL = f"file://{DATA}/segments"
PAGES = ["/home", "/search", "/product", "/cart", "/checkout"]
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
WINDOW_SECONDS = 120


def build_store() -> int:
    """Write the ``clicks`` topic; returns how many events were written."""
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir(parents=True)
    lsh = LocalStreamHouse(METADATA_URL, STORAGE_URL, segment_max_records=250)
    lsh.create_schema()
    lsh.create_topic("clicks", partitions=4)
    rng = random.Random(7)
    total = 0
    for partition in range(4):
        events = []
        for i in range(600):
            ts = START_MS + i * 1000 + rng.randrange(1000)  # one click a second per partition
            user = f"user-{rng.randrange(20)}"
            page = rng.choices(PAGES, weights=[5, 4, 3, 2, 1])[0]
            events.append((user, json.dumps({"user": user, "page": page}), ts))
        lsh.append("clicks", partition, events, flush=True)
        total += len(events)
    lsh.close()
    return total


class FormatWindow(beam.DoFn):  # type: ignore[misc]
    def process(self, element: tuple[str, int], window: object = beam.DoFn.WindowParam) -> object:
        page, count = element
        start = int(window.start.micros // 1_000_000 - START_MS // 1000)  # type: ignore[attr-defined]
        yield f"{start:05d}\t{page}\t{count}"


def main() -> int:
    written = build_store()
    print(f"Wrote {written} click events to topic 'clicks' (4 partitions) under {DATA}")
    out_prefix = str(DATA / "counts")
    pipeline = beam.Pipeline(runner=FnApiRunner())
    (
        pipeline
        | "Read"
        >> ReadFromStreamHouse(
            "clicks",
            metadata_url=METADATA_URL,
            storage_url=STORAGE_URL,
            stop=StopPosition.latest(),
            value_decoder="json",
        )
        | "Page" >> beam.Map(lambda record: (record.value["page"], 1))
        | "Window" >> beam.WindowInto(FixedWindows(WINDOW_SECONDS))
        | "Count" >> beam.CombinePerKey(sum)
        | "Format" >> beam.ParDo(FormatWindow())
        | "Write" >> beam.io.WriteToText(out_prefix, shard_name_template="", num_shards=1)
    )
    result = pipeline.run()
    result.wait_until_finish()

    rows = sorted(line.split("\t") for line in pathlib.Path(out_prefix).read_text().splitlines())
    print(f"\nClicks per page in {WINDOW_SECONDS // 60}-minute event-time windows:")
    print(f"{'window':<13}  {'page':<10} {'clicks':>6}")
    for start, page, count in rows:
        s = int(start)
        e = s + WINDOW_SECONDS
        window = f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}"
        print(f"{window:<13}  {page:<10} {int(count):>6}")
    total = sum(int(count) for _, _, count in rows)
    counters = {
        c.key.metric.name: c.committed
        for c in result.metrics().query(MetricsFilter().with_namespace("streamhouse"))["counters"]
    }
    print(f"\nTotal clicks counted: {total} (written: {written})")
    print(
        "Connector counters: "
        + ", ".join(f"{k}={counters[k]}" for k in sorted(counters) if counters[k])
    )
    return 0 if total == written else 1


if __name__ == "__main__":
    sys.exit(main())
