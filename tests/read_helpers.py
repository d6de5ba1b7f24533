"""Helpers for the read-transform tests: a local StreamHouse and in-process output capture."""

from __future__ import annotations

import pathlib
import threading
import uuid
from collections.abc import Callable
from typing import Any

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from streamhouse_beam.testing.local import LocalStreamHouse

_SINKS: dict[str, list[Any]] = {}
_SINKS_LOCK = threading.Lock()


class Collect(beam.DoFn):  # type: ignore[misc]
    """Appends every element (with its timestamp) to a process-wide list (FnApiRunner is in-process)."""

    def __init__(self, sink: str, with_timestamps: bool = False) -> None:
        self.sink = sink
        self.with_timestamps = with_timestamps

    def process(self, element: Any, timestamp: Any = beam.DoFn.TimestampParam) -> None:
        with _SINKS_LOCK:
            _SINKS[self.sink].append((element, timestamp) if self.with_timestamps else element)


def new_sink() -> str:
    name = uuid.uuid4().hex
    _SINKS[name] = []
    return name


def sink(name: str) -> list[Any]:
    return _SINKS[name]


def run(build: Callable[[beam.Pipeline], Any], runner: Any = None) -> Any:
    """Run a pipeline built by ``build(p)`` on FnApiRunner with one worker; returns the result."""
    p = beam.Pipeline(runner=runner or FnApiRunner())
    build(p)
    result = p.run()
    result.wait_until_finish()
    return result


def read_all(transform: beam.PTransform) -> list[Any]:
    """Run ``transform`` (a root read) and return its elements."""
    name = new_sink()
    run(lambda p: p | transform | beam.ParDo(Collect(name)))
    return sink(name)


def local_streamhouse(tmp: pathlib.Path, **kwargs: Any) -> LocalStreamHouse:
    lsh = LocalStreamHouse(f"sqlite:///{tmp}/metadata.db", f"file://{tmp}/segments", **kwargs)
    lsh.create_schema()
    return lsh


def write_topic(
    tmp: pathlib.Path, topic: str, partitions: list[list[Any]], **kwargs: Any
) -> LocalStreamHouse:
    """:func:`local_streamhouse` with ``topic`` created, partition ``p`` holding the records
    ``partitions[p]`` (anything ``LocalStreamHouse.append`` takes) from offset 0, flushed."""
    lsh = local_streamhouse(tmp, **kwargs)
    lsh.create_topic(topic, len(partitions))
    for partition, records in enumerate(partitions):
        lsh.append(topic, partition, records, flush=True)
    return lsh


def urls(tmp: pathlib.Path) -> dict[str, str]:
    return {"metadata_url": f"sqlite:///{tmp}/metadata.db", "storage_url": f"file://{tmp}/segments"}
