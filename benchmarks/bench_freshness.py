"""Freshness of a tailing read on Prism and Flink (issue 15, part 3).

Freshness is the time from a segment's row being committed in the metadata store to the first
record of that segment reaching a downstream DoFn. For each runner:

1. a local topic (SQLite metadata, ``file://`` segments) of ``--partitions`` partitions gets
   one seed segment per partition;
2. a streaming pipeline ``ReadFromStreamHouse(poll_interval=1.0) -> StampArrival`` is
   submitted to a long-lived job service (Prism, or the Flink job server with an embedded
   cluster), SDK harness in this process (``LOOPBACK``); once every seed record has arrived,
   the read is tailing;
3. ``--segments`` segments of ``--segment-records`` records are appended round-robin over the
   partitions, ``--gap-min``..``--gap-max`` seconds apart (a seeded random gap, so appends
   fall at every phase of the 1 s poll). Each append writes the segment object first, then
   commits its row (and the high watermark) in one transaction; the commit time is
   ``time.time()`` right after the commit returns;
4. :class:`StampArrival` appends ``partition offset time.time()`` for every record it sees to a
   file (one ``O_APPEND`` write per record); a segment's freshness is its earliest arrival
   minus its commit time. Then the job is cancelled.

Both clocks are this machine's wall clock. The report gives p50, p90, p99 and max per runner,
compares them with the issue's figures and limits, and plots the distributions.

On Flink, ``--flink-checkpointing-ms`` adds the production shape (checkpoints, bundles finished
before them, Flink's default bundle time), ``--flink-max-bundle-time-ms`` the same with another
``--max_bundle_time_mills``, and ``--flink-baseline-jar`` runs those checkpointed jobs again on
another job server launcher (e.g. one built without a runner patch), in the same run.

Usage: ``python benchmarks/bench_freshness.py [--runners prism,flink] [--segments 120]
[--flink-checkpointing-ms 1000] [--flink-baseline-jar JAR] [--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import os
import pathlib
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import apache_beam as beam
import common
from apache_beam.options.pipeline_options import PipelineOptions
from runner_services import FlinkJobServerService, PrismService, run_main

from streamhouse_beam import ReadFromStreamHouse
from streamhouse_beam.testing.local import LocalStreamHouse

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
TOPIC = "fresh"
POLL_INTERVAL = 1.0
#: The issue's figures before this work, and its limits.
BASELINE = {"Prism": (0.50, 1.00), "Flink": (0.52, 1.01)}
LIMITS = (0.6, 1.3)


class StampArrival(beam.DoFn):  # type: ignore[misc]
    """Appends ``partition offset arrival_time`` per record to ``path`` (one write per line)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = -1

    def setup(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def process(self, record: Any) -> Iterator[Any]:
        now = time.time()
        os.write(self._fd, f"{record.partition} {record.offset} {now:.6f}\n".encode())
        return iter(())

    def teardown(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_arrivals(path: pathlib.Path) -> dict[tuple[int, int], float]:
    """Earliest arrival per ``(partition, offset)``."""
    out: dict[tuple[int, int], float] = {}
    if not path.exists():
        return out
    text = path.read_text()
    for line in text[: text.rfind("\n") + 1].splitlines():
        part, offset, at = line.split()
        key = (int(part), int(offset))
        t = float(at)
        if key not in out or t < out[key]:
            out[key] = t
    return out


class Appender:
    """Writes segments of ``size`` records to a topic and times each row's commit."""

    def __init__(self, root: pathlib.Path, partitions: int, size: int) -> None:
        self.metadata_url = f"sqlite:///{root}/metadata.db"
        self.storage_url = f"file://{root}/segments"
        self.house = LocalStreamHouse(self.metadata_url, self.storage_url, compression="lz4")
        self.house.create_schema()
        self.house.create_topic(TOPIC, partitions)
        self.partitions = partitions
        self.size = size
        self.next = dict.fromkeys(range(partitions), 0)
        self.commit_span_max = 0.0

    def read_kwargs(self) -> dict[str, Any]:
        return {
            "metadata_url": self.metadata_url,
            "storage_url": self.storage_url,
            "organization_id": self.house.organization_id,
        }

    def append(self, partition: int) -> tuple[int, int, float]:
        """Append one segment; ``(partition, base offset, commit time)``."""
        base = self.next[partition]
        now_ms = int(time.time() * 1000)
        records = [
            (base + i, now_ms, b"k%d" % i, b'{"n":%d,"pad":"%s"}' % (base + i, b"x" * 80))
            for i in range(self.size)
        ]
        seg = self.house.write_segment(TOPIC, partition, records, register=False)
        before = time.time()
        self.house.register_segment(seg, high_watermark=seg.end_offset + 1)
        committed = time.time()
        self.commit_span_max = max(self.commit_span_max, committed - before)
        self.next[partition] = seg.end_offset + 1
        return partition, base, committed

    def close(self) -> None:
        self.house.close()


def _wait(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def measure(
    runner_args: list[str],
    *,
    partitions: int,
    segments: int,
    size: int,
    gap: tuple[float, float],
    seed: int,
    label: str,
) -> dict[str, Any]:
    """One tailing job on ``runner_args``; the per-segment freshness in seconds and timings."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="bench-fresh-") as tmp:
        root = pathlib.Path(tmp)
        arrivals_path = root / "arrivals.txt"
        app = Appender(root, partitions, size)
        try:
            seeds = [app.append(p) for p in range(partitions)]
            p = beam.Pipeline(options=PipelineOptions(runner_args))
            _ = (
                p
                | ReadFromStreamHouse(TOPIC, poll_interval=POLL_INTERVAL, **app.read_kwargs())
                | beam.ParDo(StampArrival(str(arrivals_path)))
            )
            began = time.perf_counter()
            result = p.run()
            seed_keys = [(part, base) for part, base, _ in seeds]
            _wait(
                lambda: all(k in read_arrivals(arrivals_path) for k in seed_keys),
                240,
                f"{label}: the seed segments",
            )
            first_output = time.perf_counter() - began
            print(f"  [{label}] tailing; first output {first_output:.1f} s after submit")
            commits = []
            for i in range(segments):
                time.sleep(rng.uniform(*gap))
                commits.append(app.append(i % partitions))
            expected = {(part, base + j) for part, base, _ in commits for j in range(size)}
            _wait(
                lambda: expected <= read_arrivals(arrivals_path).keys(),
                120,
                f"{label}: every appended record",
            )
            arrivals = read_arrivals(arrivals_path)
            result.cancel()
            with_cancel = time.perf_counter()
            try:
                result.wait_until_finish(duration=60_000)
            except Exception as exc:  # a cancelled job may report its end as an error
                print(f"  [{label}] after cancel: {type(exc).__name__}: {exc}")
            cancel_s = time.perf_counter() - with_cancel
        finally:
            app.close()
    latencies = [
        min(arrivals[(part, base + j)] for j in range(size)) - committed
        for part, base, committed in commits
    ]
    # The first record of a segment is its base offset: check that is what came first.
    return {
        "latencies": latencies,
        "first_output_s": first_output,
        "cancel_s": cancel_s,
        "commit_span_max": app.commit_span_max,
    }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def stats(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def plot(results: dict[str, dict[str, Any]], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    bins = [i * 0.05 for i in range(0, 41)]
    for label, got in results.items():
        lat = got["latencies"]
        hist.hist(lat, bins=bins, alpha=0.5, label=f"{label} (n={len(lat)})")
        ordered = sorted(lat)
        cdf.step(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=label)
    for ax in (hist, cdf):
        ax.axvline(LIMITS[0], color="grey", linestyle="--", linewidth=1)
        ax.axvline(LIMITS[1], color="red", linestyle="--", linewidth=1)
        ax.set_xlabel("commit -> first record in a downstream DoFn (s)")
        ax.grid(True, alpha=0.3)
    hist.set_ylabel("segments")
    hist.set_title(f"Freshness, poll_interval={POLL_INTERVAL} s")
    hist.legend()
    cdf.set_ylabel("fraction of segments")
    cdf.set_title("CDF (dashed: p50 limit 0.6 s, p99 limit 1.3 s)")
    cdf.axhline(0.5, color="grey", linewidth=0.5)
    cdf.axhline(0.99, color="grey", linewidth=0.5)
    cdf.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(
    info: dict[str, str],
    settings: dict[str, Any],
    startups: dict[str, float],
    results: dict[str, dict[str, Any]],
    png: str,
    command: str,
    elapsed: float,
) -> str:
    lines = [
        "# Freshness of a tailing read (commit -> first record downstream)",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        "Settings: " + ", ".join(f"{k} {v}" for k, v in settings.items()) + ".",
        "",
        "A segment's freshness: `time.time()` when the first of its records reaches "
        "`StampArrival` (a DoFn after the read) minus `time.time()` right after the "
        "transaction that inserts its row (and the high watermark) commits. Segment objects are "
        "written before their rows, as StreamHouse does. Job services are started once "
        "(start-up below, not part of any figure).",
        "",
        "| runner | segments | p50 s | p90 s | p99 s | max s | min s | mean s | "
        "before (p50 / p99) | limit p50 <= 0.6, p99 <= 1.3 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for label, got in results.items():
        s = got["stats"]
        base = next((v for k, v in BASELINE.items() if label.startswith(k)), None)
        before = f"{base[0]:.2f} / {base[1]:.2f}" if base else ""
        ok = s["p50"] <= LIMITS[0] and s["p99"] <= LIMITS[1]
        lines.append(
            f"| {label} | {s['n']} | {s['p50']:.3f} | {s['p90']:.3f} | {s['p99']:.3f} | "
            f"{s['max']:.3f} | {s['min']:.3f} | {s['mean']:.3f} | {before} | "
            f"{'met' if ok else 'NOT met'} |"
        )
    lines += ["", "| runner | service start-up s | submit -> first output s | max commit s |"]
    lines += ["|---|---:|---:|---:|"]
    for label, got in results.items():
        lines.append(
            f"| {label} | {startups.get(label, float('nan')):.1f} | {got['first_output_s']:.1f} "
            f"| {got['commit_span_max']:.4f} |"
        )
    lines += [
        "",
        "*max commit s*: the longest `register_segment` call; the commit happens inside it, so a "
        "freshness figure can be short by at most that much.",
        "",
        f"![freshness]({png})",
        "",
        f"Harness run time: {elapsed:.0f} s. Command (from the repository root): `{command}`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runners", default="prism,flink")
    parser.add_argument("--segments", type=int, default=120)
    parser.add_argument("--segment-records", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--gap-min", type=float, default=0.2)
    parser.add_argument("--gap-max", type=float, default=0.5)
    parser.add_argument(
        "--flink-checkpointing-ms",
        type=int,
        default=0,
        help="also run Flink with checkpoints this often (and bundles finished before them)",
    )
    parser.add_argument(
        "--flink-max-bundle-time-ms",
        type=int,
        default=0,
        help="with --flink-checkpointing-ms, also run the checkpointed job with "
        "--max_bundle_time_mills at this value (0: only Flink's default, 1000 ms)",
    )
    parser.add_argument(
        "--flink-baseline-jar",
        default="",
        help="with --flink-checkpointing-ms, also run the checkpointed jobs on this job server "
        "launcher (e.g. a build of .ci/fetch-runners without a patch)",
    )
    parser.add_argument(
        "--flink-baseline-label",
        default="baseline job server",
        help="what the report calls the --flink-baseline-jar job server",
    )
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="Prism only, 20 segments")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_freshness.py " + " ".join(argv or sys.argv[1:])
    started = time.perf_counter()
    runners = [r for r in args.runners.split(",") if r]
    segments = args.segments
    if args.quick:
        segments = min(segments, 20)
        if args.runners == parser.get_default("runners"):
            runners = ["prism"]
        out_dir = args.out or RESULTS / "quick"
    else:
        out_dir = args.out or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    print("machine:", info, flush=True)
    settings = {
        "poll_interval": f"{POLL_INTERVAL} s",
        "other read settings": "defaults (start earliest, no stop)",
        "segments per runner": segments,
        "records per segment": args.segment_records,
        "partitions": args.partitions,
        "gap between appends": f"uniform {args.gap_min}-{args.gap_max} s (seed {args.seed})",
        "SDK harness": "LOOPBACK (this process)",
        "Flink": "job server with embedded cluster, parallelism 1, streaming",
    }
    if "flink" in runners:
        from streamhouse_beam.testing.runners import flink_job_server

        server = flink_job_server()
        settings["Flink job server"] = (
            f"Beam {server.beam_version} on Flink {server.flink_version}, runner patches "
            f"`{server.patches or 'none'}`"
        )
        if args.flink_baseline_jar:
            settings[args.flink_baseline_label] = f"`{args.flink_baseline_jar}`"
    common_kw = {
        "partitions": args.partitions,
        "segments": segments,
        "size": args.segment_records,
        "gap": (args.gap_min, args.gap_max),
        "seed": args.seed,
    }
    loopback = ["--environment_type=LOOPBACK"]
    results: dict[str, dict[str, Any]] = {}
    startups: dict[str, float] = {}
    for runner in runners:
        if runner == "prism":
            with PrismService() as prism:
                label = "Prism"
                startups[label] = prism.startup_seconds
                args_ = prism.pipeline_args(streaming=True) + loopback
                results[label] = measure(args_, label=label, **common_kw)  # type: ignore[arg-type]
        elif runner == "flink":
            servers: list[tuple[str, str | None]] = [("Flink", None)]
            if args.flink_checkpointing_ms and args.flink_baseline_jar:
                servers.append((f"Flink ({args.flink_baseline_label})", args.flink_baseline_jar))
            for name, jar in servers:
                with FlinkJobServerService(jar=jar) as service:
                    variants = [] if jar else [(name, [])]
                    if args.flink_checkpointing_ms:
                        ms = args.flink_checkpointing_ms
                        checkpoints = [
                            f"--checkpointing_interval={ms}",
                            "--finish_bundle_before_checkpointing",
                        ]
                        variants.append((f"{name}, checkpoints every {ms} ms", checkpoints))
                        if args.flink_max_bundle_time_ms:
                            bt = args.flink_max_bundle_time_ms
                            variants.append(
                                (
                                    f"{name}, checkpoints every {ms} ms, max_bundle_time_mills {bt}",
                                    [*checkpoints, f"--max_bundle_time_mills={bt}"],
                                )
                            )
                    for label, extra in variants:
                        startups[label] = service.startup_seconds
                        args_ = service.pipeline_args(1, streaming=True) + loopback + extra
                        results[label] = measure(args_, label=label, **common_kw)  # type: ignore[arg-type]
        else:
            raise SystemExit(f"unknown runner {runner!r}")
    for label, got in results.items():
        got["stats"] = stats(got["latencies"])
        s = got["stats"]
        print(
            f"{label}: p50 {s['p50']:.3f} p90 {s['p90']:.3f} p99 {s['p99']:.3f} "
            f"max {s['max']:.3f} s over {s['n']} segments"
        )
    png = "freshness.png"
    plot(results, out_dir / png)
    text = report(info, settings, startups, results, png, command, time.perf_counter() - started)
    (out_dir / "freshness.md").write_text(text)
    print(f"wrote {out_dir / 'freshness.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
