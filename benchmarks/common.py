"""Benchmark data: one record set written as a local StreamHouse topic and as an Avro file.

:func:`dataset` builds (or reuses, from ``benchmarks/data/``) a topic ``bench`` with the
records of ``bench_decode.make_records`` (16-byte keys, 90-110-byte JSON-like values, contiguous
offsets) dealt round-robin over the partitions, in LZ4 segments written by
:class:`~streamhouse_beam.testing.local.LocalStreamHouse` into a SQLite metadata store and a
``file://`` object store, plus ``records.avro`` (codec null) with the same records and fields
``{topic, partition, offset, timestamp, key, value}``, which is what ``beam.io.ReadFromAvro``
reads in the comparison. Also the machine description every report starts with.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import platform
import shutil
import subprocess
import sys
from typing import Any

import fastavro

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from bench_decode import make_records

from streamhouse_beam.testing.local import LocalStreamHouse

DATA_ROOT = pathlib.Path(__file__).resolve().parent / "data"
TOPIC = "bench"
#: Bump when the layout below changes, so cached datasets are rebuilt.
LAYOUT_VERSION = 1

AVRO_SCHEMA = {
    "type": "record",
    "name": "BenchRecord",
    "fields": [
        {"name": "topic", "type": "string"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long"},
        {"name": "key", "type": ["null", "bytes"]},
        {"name": "value", "type": "bytes"},
    ],
}

Record = tuple[int, int, "bytes | None", bytes]


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A generated benchmark dataset on local disk."""

    root: pathlib.Path
    records: int
    partitions: int

    @property
    def metadata_url(self) -> str:
        return f"sqlite:///{self.root}/metadata.db"

    @property
    def storage_url(self) -> str:
        return f"file://{self.root}/segments"

    @property
    def avro_path(self) -> pathlib.Path:
        return self.root / "records.avro"

    def urls(self) -> dict[str, str]:
        return {"metadata_url": self.metadata_url, "storage_url": self.storage_url}

    def partition_records(self) -> dict[int, list[Record]]:
        """The records of each partition, rebuilt from the seed (for the ceiling SDF)."""
        return split_partitions(make_records(self.records), self.partitions)


def split_partitions(records: list[Any], partitions: int) -> dict[int, list[Record]]:
    """Deal ``records`` round-robin; each partition's offsets restart at 0 and stay contiguous."""
    out: dict[int, list[Record]] = {p: [] for p in range(partitions)}
    for i, (_, ts, key, value) in enumerate(records):
        part = out[i % partitions]
        part.append((len(part), ts, key, value))
    return out


def dataset(records: int, partitions: int, *, segment_records: int = 100_000) -> Dataset:
    """Return the dataset of ``records`` records over ``partitions``, building it if needed."""
    root = DATA_ROOT / f"v{LAYOUT_VERSION}-{records}-{partitions}"
    stamp = root / "complete.json"
    ds = Dataset(root, records, partitions)
    if stamp.exists():
        return ds
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rows = make_records(records)
    by_partition = split_partitions(rows, partitions)
    lsh = LocalStreamHouse(
        ds.metadata_url, ds.storage_url, compression="lz4", segment_max_records=segment_records
    )
    try:
        lsh.create_schema()
        lsh.create_topic(TOPIC, partitions)
        for p, recs in by_partition.items():
            for start in range(0, len(recs), segment_records):
                lsh.write_segment(TOPIC, p, recs[start : start + segment_records])
    finally:
        lsh.close()
    with ds.avro_path.open("wb") as fh:
        fastavro.writer(
            fh,
            fastavro.parse_schema(AVRO_SCHEMA),
            (
                {"topic": TOPIC, "partition": p, "offset": o, "timestamp": t, "key": k, "value": v}
                for p, recs in by_partition.items()
                for o, t, k, v in recs
            ),
            codec="null",
        )
    stamp.write_text(json.dumps({"records": records, "partitions": partitions}))
    return ds


def machine_info() -> dict[str, str]:
    """nproc, CPU model, Python, Beam, pyarrow and fastavro versions, and the C accelerator."""
    import apache_beam
    import pyarrow

    from streamhouse_beam.segment import decode

    cpu = platform.processor() or "unknown"
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    return {
        "nproc": nproc,
        "cpu": cpu,
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": sys.version.split()[0],
        "apache-beam": apache_beam.__version__,
        "pyarrow": pyarrow.__version__,
        "fastavro": fastavro.__version__,
        "C accelerator": "built" if decode.speedups_active() else "not built (pure Python)",
    }
