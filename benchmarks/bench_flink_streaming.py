"""A checkpointed streaming read on Flink: catch-up throughput and idle cost, per job server.

The production shape of a Flink read (streaming, checkpoints, bundles finished before them) has
costs a batch benchmark (``bench_flink.py``) does not see: the read's splittable DoFn resumes
through a runner timer after every ``process()`` call, and the runner hands the resumed element
to the SDK harness only when the bundle it fired into finishes (docs/flink.md, "Freshness").
Two measurements, each on every variant: a job server (the cached one, and ``--baseline-jar``
if given, e.g. a build without a runner patch) and a bundle time (Flink's default, and each of
``--max-bundle-time-ms``), SDK harness in this process (``LOOPBACK``), parallelism 1,
checkpoints every ``--checkpointing-ms`` with ``--finish_bundle_before_checkpointing``:

* **catch-up**: the benchmark dataset (``common.dataset``: ``--records`` records over
  ``--partitions`` partitions) read with ``ReadFromStreamHouse(stop=latest)``; a DoFn after the
  read adds up the records of each bundle and appends ``count time`` to a file when the bundle
  finishes; the run ends when the counts reach the record count (the job is then cancelled:
  with checkpoints on, Beam keeps the sources running). *read s* is the time from the first
  bundle with output to the last, and records/s is over it. ``--repeat`` runs per variant,
  round-robin; the report gives medians and each variant's ratio to the first one.
* **idle**: a tailing read (``poll_interval=1.0``) of ``--idle-partitions`` partitions, each
  holding one segment; once every record has arrived the read is caught up, and over the next
  ``--idle-seconds`` the CPU time of this process (the SDK harness) and of the job server's JVM
  (embedded Flink; a job server of its own per idle job) is sampled, with the bundles the
  read's stage runs (counted by a DoFn's ``start_bundle``).

Usage: ``python benchmarks/bench_flink_streaming.py [--records 1000000] [--partitions 4]
[--baseline-jar JAR] [--max-bundle-time-ms 100] [--repeat 2] [--idle-partitions 32]
[--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import os
import pathlib
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
from bench_freshness import TOPIC as IDLE_TOPIC
from bench_freshness import Appender, StampArrival, read_arrivals
from runner_services import FlinkJobServerService, run_main

from streamhouse_beam import ReadFromStreamHouse, StopPosition
from streamhouse_beam.testing.runners import flink_job_server

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

Variant = tuple[str, str, list[str]]  # job server label, bundle-time label, pipeline args


def _append_line(path: str, line: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except FileNotFoundError:
        # A cancelled job's last bundle may still run once its run's directory is gone.
        return
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _lines(path: pathlib.Path) -> list[str]:
    if not path.exists():
        return []
    text = path.read_text()
    return text[: text.rfind("\n") + 1].splitlines()


class CountPerBundle(beam.DoFn):  # type: ignore[misc]
    """Appends ``records time.time()`` to ``path`` for every bundle that saw any (one write)."""

    def __init__(self, path: str, *, batches: bool) -> None:
        self.path = path
        self.batches = batches
        self._count = 0

    def start_bundle(self) -> None:
        self._count = 0

    def process(self, element: Any) -> Iterator[Any]:
        self._count += element.num_rows if self.batches else 1
        return iter(())

    def finish_bundle(self) -> None:
        if self._count:
            _append_line(self.path, f"{self._count} {time.time():.6f}\n")


class MarkBundles(beam.DoFn):  # type: ignore[misc]
    """Appends one line to ``path`` per bundle of its stage."""

    def __init__(self, path: str) -> None:
        self.path = path

    def start_bundle(self) -> None:
        _append_line(self.path, "b\n")

    def process(self, element: Any) -> Iterator[Any]:
        return iter(())


def _cancel(result: Any) -> None:
    result.cancel()
    try:
        result.wait_until_finish(duration=60_000)
    except Exception as exc:  # a cancelled job may report its end as an error
        print(f"    after cancel: {type(exc).__name__}: {exc}", flush=True)


def catch_up(
    runner_args: list[str], ds: common.Dataset, output: str, timeout: float
) -> dict[str, float]:
    """One job reading the whole dataset; seconds to first output and to the last record."""
    with tempfile.TemporaryDirectory(prefix="bench-catchup-") as tmp:
        path = pathlib.Path(tmp) / "counts.txt"
        p = beam.Pipeline(options=PipelineOptions(runner_args))
        _ = (
            p
            | ReadFromStreamHouse(
                common.TOPIC, stop=StopPosition.latest(), output=output, **ds.urls()
            )
            | beam.ParDo(CountPerBundle(str(path), batches=output == "batches"))
        )
        submitted = time.time()
        result = p.run()
        deadline = time.monotonic() + timeout
        try:
            while True:
                counts = [(int(c), float(t)) for c, t in (ln.split() for ln in _lines(path))]
                total = sum(c for c, _ in counts)
                if total >= ds.records:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"{total} of {ds.records} records after {timeout:.0f} s")
                time.sleep(0.05)
        finally:
            _cancel(result)
    if total != ds.records:
        raise SystemExit(f"counted {total} records, expected {ds.records}")
    first, last = counts[0][1], counts[-1][1]
    return {
        "first_s": first - submitted,
        "total_s": last - submitted,
        "read_s": last - first,
        "bundles": len(counts),
    }


def _jvm_cpu_seconds(pid: int) -> float:
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def idle(runner_args: list[str], jvm_pid: int, partitions: int, seconds: float) -> dict[str, float]:
    """CPU shares and bundles per second of a caught-up tailing read of ``partitions``."""
    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        root = pathlib.Path(tmp)
        arrivals, bundles = root / "arrivals.txt", root / "bundles.txt"
        app = Appender(root, partitions, 10)
        try:
            seeds = [(part, base) for part, base, _ in (app.append(p) for p in range(partitions))]
            p = beam.Pipeline(options=PipelineOptions(runner_args))
            _ = (
                p
                | ReadFromStreamHouse(IDLE_TOPIC, poll_interval=1.0, **app.read_kwargs())
                | beam.ParDo(StampArrival(str(arrivals)))
                | beam.ParDo(MarkBundles(str(bundles)))
            )
            result = p.run()
            try:
                deadline = time.monotonic() + 240
                while not all(k in read_arrivals(arrivals) for k in seeds):
                    if time.monotonic() > deadline:
                        raise SystemExit("the seed records did not arrive in 240 s")
                    time.sleep(0.2)
                time.sleep(10)  # every partition past its first empty poll
                cpu0, jvm0, b0 = (
                    time.process_time(),
                    _jvm_cpu_seconds(jvm_pid),
                    len(_lines(bundles)),
                )
                t0 = time.monotonic()
                time.sleep(seconds)
                cpu1, jvm1, b1 = (
                    time.process_time(),
                    _jvm_cpu_seconds(jvm_pid),
                    len(_lines(bundles)),
                )
                elapsed = time.monotonic() - t0
            finally:
                _cancel(result)
        finally:
            app.close()
    return {
        "harness_pct": 100 * (cpu1 - cpu0) / elapsed,
        "jvm_pct": 100 * (jvm1 - jvm0) / elapsed,
        "bundles_per_s": (b1 - b0) / elapsed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--outputs", default="records,batches")
    parser.add_argument("--checkpointing-ms", type=int, default=1000)
    parser.add_argument(
        "--max-bundle-time-ms",
        default="100",
        help="comma-separated --max_bundle_time_mills values run besides Flink's default",
    )
    parser.add_argument("--baseline-jar", default="", help="a job server launcher to compare with")
    parser.add_argument("--baseline-label", default="baseline job server")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per catch-up run")
    parser.add_argument("--idle-partitions", type=int, default=32, help="0: skip the idle part")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument(
        "--quick", action="store_true", help="200k records, one run, 4 idle partitions for 10 s"
    )
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_flink_streaming.py " + " ".join(argv or sys.argv[1:])
    started = time.perf_counter()
    if args.quick:
        args.records = min(args.records, 200_000)
        args.repeat = 1
        args.max_bundle_time_ms = ""
        args.idle_partitions = min(args.idle_partitions, 4)
        args.idle_seconds = min(args.idle_seconds, 10.0)
    out_dir = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    print("machine:", info, flush=True)
    ds = common.dataset(args.records, args.partitions)
    warm_ds = common.dataset(20_000, args.partitions)
    outputs = [o for o in args.outputs.split(",") if o]
    bundle_times = [("default bundle time", [])] + [
        (f"max_bundle_time_mills {ms}", [f"--max_bundle_time_mills={ms}"])
        for ms in (int(x) for x in args.max_bundle_time_ms.split(",") if x)
    ]
    servers: list[tuple[str, str | None]] = []
    if args.baseline_jar:
        servers.append((args.baseline_label, args.baseline_jar))
    servers.append((f"cached (patches {flink_job_server().patches or 'none'})", None))
    checkpoints = [
        "--streaming",
        f"--checkpointing_interval={args.checkpointing_ms}",
        "--finish_bundle_before_checkpointing",
        "--environment_type=LOOPBACK",
    ]
    catchups: dict[tuple[str, str, str], list[dict[str, float]]] = {}
    idles: dict[tuple[str, str], dict[str, float]] = {}
    for name, jar in servers:
        with FlinkJobServerService(jar=jar) as service:
            print(f"{name}: up in {service.startup_seconds:.1f} s", flush=True)
            base = service.pipeline_args(1) + checkpoints
            # The first job on a fresh job server pays for class loading and JIT.
            warm = catch_up(base, warm_ds, "records", args.timeout)
            print(f"  warm-up job: {warm['total_s']:.1f} s", flush=True)
            for round_ in range(args.repeat):
                for bundle, extra in bundle_times:
                    for output in outputs:
                        got = catch_up(base + extra, ds, output, args.timeout)
                        catchups.setdefault((name, bundle, output), []).append(got)
                        print(
                            f"  round {round_ + 1} {bundle} {output}: read {got['read_s']:.2f} s,"
                            f" total {got['total_s']:.2f} s, {got['bundles']:.0f} bundles",
                            flush=True,
                        )
        # Each idle job gets a job server of its own, so the JVM's CPU is that job's alone
        # (not the tail of the catch-up jobs: their clean-up, the collector).
        for bundle, extra in bundle_times if args.idle_partitions else []:
            with FlinkJobServerService(jar=jar) as service:
                runner_args = service.pipeline_args(1) + checkpoints + extra
                got = idle(runner_args, service.pid, args.idle_partitions, args.idle_seconds)
            idles[(name, bundle)] = got
            print(
                f"  idle {bundle}: harness {got['harness_pct']:.1f} %, JVM "
                f"{got['jvm_pct']:.1f} %, {got['bundles_per_s']:.1f} bundles/s",
                flush=True,
            )
    text = report(info, ds, args, catchups, idles, outputs, command, time.perf_counter() - started)
    (out_dir / "flink-streaming.md").write_text(text)
    print()
    print("\n".join(line for line in text.splitlines() if line.startswith("| ")))
    print(f"wrote {out_dir / 'flink-streaming.md'}")
    return 0


def _rate(records: int, read_seconds: list[float]) -> float:
    """Records per second over the median read time (nan when one bundle held them all)."""
    median = statistics.median(read_seconds)
    return records / median if median > 0 else float("nan")


def _ratio(rate: float, base: float) -> str:
    ratio = rate / base
    return "n/a" if ratio != ratio else f"{ratio:.2f}x"


def report(
    info: dict[str, str],
    ds: common.Dataset,
    args: argparse.Namespace,
    catchups: dict[tuple[str, str, str], list[dict[str, float]]],
    idles: dict[tuple[str, str], dict[str, float]],
    outputs: list[str],
    command: str,
    elapsed: float,
) -> str:
    lines = [
        "# A checkpointed streaming read on Flink: catch-up throughput and idle cost",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        f"Settings: streaming, checkpoints every {args.checkpointing_ms} ms with "
        "`--finish_bundle_before_checkpointing`, parallelism 1, LOOPBACK; catch-up: "
        f"{ds.records} records over {ds.partitions} partitions (`stop=latest`, read defaults), "
        f"{args.repeat} runs per variant round-robin (medians; min-max in brackets).",
        "",
        "*read s*: first bundle with output to the last; *total s*: submission to the last; "
        "*bundles*: bundles of the read's stage that emitted records; *ratio*: records/s over "
        "the first row's.",
        "",
    ]
    for output in outputs:
        rows = [(k, v) for k, v in catchups.items() if k[2] == output]
        if not rows:
            continue
        base_rate = _rate(ds.records, [s["read_s"] for s in rows[0][1]])
        lines += [
            f'## Catch-up, `output="{output}"`',
            "",
            "| job server | bundle time | read s | total s | records/s | ratio | bundles |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for (name, bundle, _), runs in rows:
            read = [s["read_s"] for s in runs]
            total = statistics.median(s["total_s"] for s in runs)
            rate = _rate(ds.records, read)
            lines.append(
                f"| {name} | {bundle} | {statistics.median(read):.2f} "
                f"[{min(read):.2f}-{max(read):.2f}] | {total:.2f} | {rate:,.0f} | "
                f"{_ratio(rate, base_rate)} | {statistics.median(s['bundles'] for s in runs):.0f} |"
            )
        lines.append("")
    if idles:
        lines += [
            f"## Idle: a caught-up tailing read of {args.idle_partitions} partitions "
            f"(`poll_interval=1.0`), {args.idle_seconds:.0f} s",
            "",
            "CPU as a share of one core: this process (the SDK harness, LOOPBACK) and the job "
            "server's JVM (the embedded Flink).",
            "",
            "| job server | bundle time | SDK harness % | job server % | total % | bundles/s |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for (name, bundle), got in idles.items():
            lines.append(
                f"| {name} | {bundle} | {got['harness_pct']:.1f} | {got['jvm_pct']:.1f} | "
                f"{got['harness_pct'] + got['jvm_pct']:.1f} | {got['bundles_per_s']:.1f} |"
            )
        lines.append("")
    lines += [
        f"Harness run time: {elapsed:.0f} s. Command (from the repository root): `{command}`.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    run_main(main)
