"""Soak: does a tailing read's Flink checkpoint stay the same size while it runs?

Runs ``ReadFromStreamHouse(topic, stop=None)`` on Beam's FlinkRunner exactly as the README sets
it up for a user (the job server from ``.ci/fetch-runners``, an embedded Flink, streaming with
checkpoints every second, the filesystem state backend), on 8 partitions that receive a trickle
of appends: one 20-record segment every 10 s, to each partition in turn. A ``flink-conf.yaml``
in ``FLINK_CONF_DIR`` gives the embedded Flink a REST port on 127.0.0.1, from which the script
samples the size of the latest completed checkpoint, in total and per operator.

At the end it cancels the job and checks the read's guarantees: the records collected
(deduplicated by topic, partition and offset) are exactly the records appended, and the consumer
group's committed offsets reached the end of every partition.

    python integration/soak_flink_state.py --minutes 30 --report docs/results/flink-soak.md

prints one line per sample, and writes a JSON summary (``--json``) and a Markdown report
(``--report``). ``make soak`` runs the 30-minute version; ``integration/test_flink_state.py``
runs a shorter one in CI and asserts on the JSON. Exit status 0 means the state stayed bounded
(within 10 % + 16 KiB of its size at the first minute) and the output was exact.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from streamhouse_beam.beam import ReadFromStreamHouse
from streamhouse_beam.testing import runners
from streamhouse_beam.testing.local import LocalStreamHouse
from streamhouse_beam.testing.servers import free_port

TOPIC = "soak"
GROUP = "soak-group"
#: the bound: the latest checkpoint at the end may exceed its size at the first minute by this
#: fraction plus ``SLACK_BYTES``
GROWTH_LIMIT = 0.10
SLACK_BYTES = 16 * 1024


@dataclasses.dataclass
class Sample:
    """One reading of the latest completed checkpoint."""

    elapsed_s: float
    checkpoint_id: int
    state_size: int
    operators: dict[str, int]


class AppendOffsets(beam.DoFn):  # type: ignore[misc]
    """Appends ``partition offset`` lines to a file (the SDK harness is this process)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._lock = threading.Lock()

    def process(self, record: Any) -> Iterator[None]:
        with self._lock, open(self.path, "a", encoding="utf-8") as out:
            out.write(f"{record.partition} {record.offset}\n")
        return iter(())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


class FlinkRest:
    """The few REST calls the soak needs, against the embedded Flink's REST port."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def running_job(self) -> str | None:
        try:
            jobs = _get(f"{self.base}/jobs")["jobs"]
        except OSError:
            return None
        running = [job["id"] for job in jobs if job["status"] == "RUNNING"]
        return running[0] if running else None

    def latest_checkpoint(self, job: str) -> tuple[int, int, dict[str, int]] | None:
        latest = _get(f"{self.base}/jobs/{job}/checkpoints")["latest"]["completed"]
        if not latest:
            return None
        checkpoint_id = int(latest["id"])
        names = {v["id"]: v["name"] for v in _get(f"{self.base}/jobs/{job}")["vertices"]}
        details = _get(f"{self.base}/jobs/{job}/checkpoints/details/{checkpoint_id}")
        operators = {
            names.get(vertex, vertex): int(task.get("state_size", 0))
            for vertex, task in details.get("tasks", {}).items()
        }
        return checkpoint_id, int(latest["state_size"]), operators

    def restored_from(self, job: str) -> str | None:
        """The checkpoint or savepoint path ``job`` was restored from (None: a fresh start)."""
        restored = _get(f"{self.base}/jobs/{job}/checkpoints")["latest"].get("restored")
        return None if not restored else str(restored.get("external_path"))

    def stop_with_savepoint(self, job: str, target: pathlib.Path, timeout: float = 120) -> str:
        """Stop ``job`` with a savepoint under ``target``; return the savepoint's path."""
        body = json.dumps({"targetDirectory": f"file://{target}", "drain": False}).encode()
        request = urllib.request.Request(
            f"{self.base}/jobs/{job}/stop",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            trigger = json.load(response)["request-id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = _get(f"{self.base}/jobs/{job}/savepoints/{trigger}")
            if status["status"]["id"] == "COMPLETED":
                operation = status["operation"]
                if "location" not in operation:
                    raise RuntimeError(f"the savepoint of job {job} failed: {operation}")
                return str(operation["location"])
            time.sleep(0.5)
        raise RuntimeError(f"no savepoint of job {job} within {timeout:.0f} s")


def write_flink_conf(conf_dir: pathlib.Path, rest_port: int, *extra: str) -> None:
    """A ``flink-conf.yaml`` for the embedded Flink: REST on ``rest_port``, all on 127.0.0.1."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "flink-conf.yaml").write_text(
        "\n".join(
            [
                f"rest.port: {rest_port}",
                "rest.address: 127.0.0.1",
                "rest.bind-address: 127.0.0.1",
                "jobmanager.rpc.address: 127.0.0.1",
                "jobmanager.bind-host: 127.0.0.1",
                "taskmanager.bind-host: 127.0.0.1",
                "taskmanager.host: 127.0.0.1",
                # Keep every completed checkpoint's size visible and none of them on disk long.
                "state.checkpoints.num-retained: 1",
                *extra,
                "",
            ]
        ),
        encoding="utf-8",
    )


def _short_name(name: str) -> str:
    return name if len(name) <= 60 else name[:57] + "..."


def run_soak(
    *,
    minutes: float,
    partitions: int = 8,
    append_every_s: float = 10.0,
    records_per_append: int = 20,
    sample_every_s: float = 15.0,
    checkpoint_interval_ms: int = 1000,
    poll_interval: float | None = None,
    workdir: pathlib.Path,
    log: Any = print,
) -> dict[str, Any]:
    """Run the soak for ``minutes`` and return its summary (see the module docstring)."""
    rest_port = free_port()
    conf_dir = workdir / "flink-conf"
    write_flink_conf(conf_dir, rest_port)
    # The job server (a child of this process) and its embedded Flink read FLINK_CONF_DIR.
    os.environ["FLINK_CONF_DIR"] = str(conf_dir)
    server = runners.flink_job_server()

    metadata_url = f"sqlite:///{workdir}/metadata.db"
    storage_url = f"file://{workdir}/segments"
    house = LocalStreamHouse(metadata_url, storage_url, segment_max_records=records_per_append)
    house.create_schema()
    house.create_topic(TOPIC, partitions)
    appended: set[tuple[int, int]] = set()

    def append(partition: int) -> None:
        start = house.next_offset(TOPIC, partition)
        records = [
            (f"k{o % 4}", f"{partition}/{o}") for o in range(start, start + records_per_append)
        ]
        for offset in house.append(TOPIC, partition, records, flush=True):
            appended.add((partition, offset))

    for partition in range(partitions):
        append(partition)

    out = workdir / "collected.txt"
    options = PipelineOptions(
        runners.flink_pipeline_args(
            streaming=True,
            checkpointing_interval_ms=checkpoint_interval_ms,
            extra=[
                "--state_backend=filesystem",
                f"--state_backend_storage_path=file://{workdir}/checkpoints",
            ],
        )
    )
    p = beam.Pipeline(options=options)
    _ = (
        p
        | ReadFromStreamHouse(
            TOPIC,
            metadata_url=metadata_url,
            storage_url=storage_url,
            organization_id=house.organization_id,
            commit_offsets_group=GROUP,
            **({} if poll_interval is None else {"poll_interval": poll_interval}),
        )
        | beam.ParDo(AppendOffsets(str(out)))
    )
    rest = FlinkRest(rest_port)
    samples: list[Sample] = []
    result = p.run()
    started = time.monotonic()
    try:
        job = None
        while job is None:
            if time.monotonic() - started > 180:
                raise RuntimeError(f"no running Flink job on 127.0.0.1:{rest_port} after 180 s")
            time.sleep(1)
            job = rest.running_job()
        log(f"job {job} running; REST on 127.0.0.1:{rest_port}; patches {server.patches or 'none'}")
        started = time.monotonic()
        next_append = started + append_every_s
        next_sample = started + sample_every_s
        turn = 0
        end = started + minutes * 60
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_append:
                append(turn % partitions)
                turn += 1
                next_append += append_every_s
            if now >= next_sample:
                latest = rest.latest_checkpoint(job)
                if latest is not None:
                    checkpoint_id, size, operators = latest
                    sample = Sample(round(now - started, 1), checkpoint_id, size, operators)
                    samples.append(sample)
                    biggest = max(operators.items(), key=lambda kv: kv[1], default=("-", 0))
                    log(
                        f"{sample.elapsed_s:7.1f} s  checkpoint {checkpoint_id:5d}  "
                        f"{size:10d} B  largest: {_short_name(biggest[0])} {biggest[1]} B"
                    )
                next_sample += sample_every_s
            time.sleep(0.2)
        # The last appends reach the output and the commits within a few checkpoints.
        deadline = time.monotonic() + 120
        ends = {p_: house.next_offset(TOPIC, p_) for p_ in range(partitions)}
        store = house.metadata()
        while time.monotonic() < deadline:
            committed = {p_: store.committed_offset(GROUP, TOPIC, p_) for p_ in range(partitions)}
            collected = read_offsets(out)
            if committed == ends and collected >= appended:
                break
            time.sleep(1)
    finally:
        result.cancel()
    committed = {p_: store.committed_offset(GROUP, TOPIC, p_) for p_ in range(partitions)}
    collected = read_offsets(out)
    return _summary(samples, appended, collected, committed, ends, minutes, server)


def read_offsets(path: pathlib.Path) -> set[tuple[int, int]]:
    """The (partition, offset) pairs :class:`AppendOffsets` wrote, deduplicated."""
    if not path.exists():
        return set()
    rows = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        partition, offset = line.split()
        rows.add((int(partition), int(offset)))
    return rows


def _summary(
    samples: list[Sample],
    appended: set[tuple[int, int]],
    collected: set[tuple[int, int]],
    committed: dict[int, int | None],
    ends: dict[int, int],
    minutes: float,
    server: runners.FlinkJobServer,
) -> dict[str, Any]:
    at_minute = next((s for s in samples if s.elapsed_s >= 60), samples[0] if samples else None)
    last = samples[-1] if samples else None
    limit = None if at_minute is None else at_minute.state_size * (1 + GROWTH_LIMIT) + SLACK_BYTES
    bounded = bool(last and limit is not None and last.state_size <= limit)
    exact = collected == appended
    return {
        "minutes": minutes,
        "patches": server.patches,
        "beam_java": server.beam_version,
        "flink": server.flink_version,
        "samples": [dataclasses.asdict(s) for s in samples],
        "size_at_1min": at_minute.state_size if at_minute else None,
        "size_at_end": last.state_size if last else None,
        "limit": limit,
        "bounded": bounded,
        "records_appended": len(appended),
        "records_collected": len(collected),
        "missing": sorted(appended - collected)[:20],
        "unexpected": sorted(collected - appended)[:20],
        "exact": exact,
        "committed": {str(k): v for k, v in committed.items()},
        "ends": {str(k): v for k, v in ends.items()},
        "commits_at_end": committed == ends,
        "ok": bounded and exact and committed == ends,
    }


def _report(summary: dict[str, Any]) -> str:
    lines = [
        "# Flink checkpoint size while tailing (soak)",
        "",
        f"Written by `integration/soak_flink_state.py` ({summary['minutes']} minutes; "
        f"Beam {summary['beam_java']} job server on Flink {summary['flink']}, runner patches "
        f"`{summary['patches'] or 'none'}`). 8 partitions, one 20-record segment appended every "
        "10 s, checkpoints every second, filesystem state backend, the read's default settings.",
        "",
        f"- latest checkpoint at 1 minute: {summary['size_at_1min']} B; at the end: "
        f"{summary['size_at_end']} B (limit {summary['limit']:.0f} B): "
        f"**{'bounded' if summary['bounded'] else 'GROWING'}**",
        f"- records appended {summary['records_appended']}, collected (deduplicated) "
        f"{summary['records_collected']}: **{'exact' if summary['exact'] else 'NOT exact'}**",
        f"- committed offsets reached the end of every partition: "
        f"**{'yes' if summary['commits_at_end'] else 'NO'}**",
        "",
        "| elapsed (s) | checkpoint | size (B) | largest operator (B) |",
        "|---:|---:|---:|---|",
    ]
    for sample in summary["samples"]:
        name, size = max(sample["operators"].items(), key=lambda kv: kv[1], default=("-", 0))
        lines.append(
            f"| {sample['elapsed_s']} | {sample['checkpoint_id']} | {sample['state_size']} | "
            f"{_short_name(name)}: {size} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--sample-every", type=float, default=15.0)
    parser.add_argument("--checkpoint-interval-ms", type=int, default=1000)
    parser.add_argument(
        "--poll-interval", type=float, help="the read's poll_interval (default: the read's own)"
    )
    parser.add_argument(
        "--workdir", type=pathlib.Path, help="keep the topic and checkpoints here (default: temp)"
    )
    parser.add_argument("--json", type=pathlib.Path, help="write the summary here")
    parser.add_argument("--report", type=pathlib.Path, help="write a Markdown report here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="streamhouse-soak-") as tmp:
        workdir = args.workdir or pathlib.Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        summary = run_soak(
            minutes=args.minutes,
            partitions=args.partitions,
            sample_every_s=args.sample_every,
            checkpoint_interval_ms=args.checkpoint_interval_ms,
            poll_interval=args.poll_interval,
            workdir=workdir,
            log=lambda line: print(line, flush=True),
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(_report(summary), encoding="utf-8")
    print(
        f"checkpoint {summary['size_at_1min']} B at 1 min -> {summary['size_at_end']} B at end; "
        f"bounded={summary['bounded']} exact={summary['exact']} "
        f"commits_at_end={summary['commits_at_end']}"
    )
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
