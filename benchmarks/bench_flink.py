"""Throughput on Flink and Prism with long-lived job services (issue 15, part 2).

One job service per runner is started once and its start-up is timed and reported on its own;
every measured pipeline is then submitted to it with ``PortableRunner`` and timed from
``run()`` to ``wait_until_finish()`` (submission to done). The pipelines, all bounded
(``stop=latest``), all ending in ``Count.Globally`` whose one result a DoFn writes to a file
(checked against the record count, from whichever process runs the SDK harness):

* ``records``: ``ReadFromStreamHouse`` (``output="records"``), default settings;
* ``batches``: ``ReadFromStreamHouse(output="batches") -> Map(num_rows) -> sum``, default
  settings, and again with ``max_poll_records=50000`` (``batches mpr=50000``);
* ``records mpr=50000``: records mode with larger polls (fewer bundles);
* ``avro``: ``beam.io.ReadFromAvro`` over the same records (the goal's baseline);
* ``trivial``: a bare splittable DoFn that yields a constant 5-tuple per claimed offset, one
  restriction per partition and the read's checkpoint cadence: what the runner and SDK
  harness cost per element when nothing is decoded;
* ``empty``: ``Create([0]) -> Count``: the fixed cost of one job (plan translation, the
  embedded mini-cluster, SDK harness connection, teardown). ``net`` figures subtract it.

The runners: ``flink`` (the job server with an embedded mini-cluster per job, ``[local]``),
``cluster`` (the same job server submitting to a :class:`FlinkSessionCluster` of separate JVMs,
SDK harness in :class:`SdkWorkerPool` processes) and ``prism``; Flink at parallelism 1 and 2.
``--profile`` samples the SDK harness threads (LOOPBACK only: they run in this process) and
reports the top functions by share of samples.

Usage: ``python benchmarks/bench_flink.py [--records 5000000] [--partitions 4] [--repeat 2]
[--runners flink,prism,cluster] [--parallelism 1,2] [--environment loopback|external]
[--profile] [--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import apache_beam as beam
import common
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.core import RestrictionProvider
from runner_services import FlinkJobServerService, PrismService, run_main

from streamhouse_beam import ReadFromStreamHouse, StopPosition
from streamhouse_beam.settings import DEFAULT_MAX_POLL_BYTES, DEFAULT_MAX_POLL_RECORDS

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
BIG_POLL = 50_000

Build = Callable[[beam.Pipeline], Any]


class WriteCount(beam.DoFn):  # type: ignore[misc]
    """Writes the pipeline's one count to ``path`` (any process on this machine)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def process(self, count: int) -> None:
        pathlib.Path(self.path).write_text(str(int(count)))


class _PerPartition(RestrictionProvider):  # type: ignore[misc]
    def initial_restriction(self, element: tuple[int, int]) -> OffsetRange:
        return OffsetRange(0, element[1])

    def create_tracker(self, restriction: OffsetRange) -> OffsetRestrictionTracker:
        return OffsetRestrictionTracker(restriction)

    def restriction_size(self, element: tuple[int, int], restriction: OffsetRange) -> int:
        return int(restriction.size())

    def split(self, element: tuple[int, int], restriction: OffsetRange) -> Iterator[OffsetRange]:
        yield restriction


class TrivialRecordsFn(beam.DoFn):  # type: ignore[misc]
    """For ``(partition, n)``: yields ``(partition, offset, ts, key, value)`` for offsets < n.

    Key and value are constant bytes of the dataset's sizes (16 and ~100 bytes), so the cost is
    the runner's and the SDK harness's per element, with nothing read or decoded. Checkpoints
    (``defer_remainder``) every ``max_poll_records`` claims, as the read does.
    """

    KEY = b"user-00000000000"
    VALUE = b'{"event":"view","user":1,"page":"/p/1","ok":true,"pad":"' + b"x" * 40 + b'"}'

    def __init__(self, max_poll_records: int) -> None:
        self.max_poll_records = max_poll_records

    def process(
        self,
        element: tuple[int, int],
        tracker: Any = beam.DoFn.RestrictionParam(_PerPartition()),
    ) -> Iterator[tuple[int, int, int, bytes, bytes]]:
        partition = element[0]
        rng = tracker.current_restriction()
        end = min(rng.start + self.max_poll_records, rng.stop)
        try_claim = tracker.try_claim
        key, value = self.KEY, self.VALUE
        for offset in range(rng.start, end):
            if not try_claim(offset):
                return
            yield (partition, offset, 1_700_000_000_000 + offset, key, value)
        if end < rng.stop:
            tracker.defer_remainder()


def _read(ds: common.Dataset, output: str, max_poll_records: int | None) -> beam.PTransform:
    kwargs: dict[str, Any] = {"stop": StopPosition.latest(), "output": output}
    if max_poll_records is not None:
        kwargs["max_poll_records"] = max_poll_records
    return ReadFromStreamHouse(common.TOPIC, **ds.urls(), **kwargs)


def cases(ds: common.Dataset, quick: bool) -> dict[str, tuple[Build, int]]:
    """``{name: (build, expected count)}``; ``build(p)`` returns the PCollection of one count."""
    per_partition = [len(range(p, ds.records, ds.partitions)) for p in range(ds.partitions)]

    def records(mpr: int | None) -> Build:
        return lambda p: p | _read(ds, "records", mpr) | beam.combiners.Count.Globally()

    def batches(mpr: int | None) -> Build:
        return lambda p: (
            p
            | _read(ds, "batches", mpr)
            | beam.Map(lambda batch: batch.num_rows)
            | beam.CombineGlobally(sum)
        )

    def avro(p: beam.Pipeline) -> Any:
        return p | beam.io.ReadFromAvro(str(ds.avro_path)) | beam.combiners.Count.Globally()

    def trivial(p: beam.Pipeline) -> Any:
        return (
            p
            | beam.Create(list(enumerate(per_partition)))
            | beam.ParDo(TrivialRecordsFn(DEFAULT_MAX_POLL_RECORDS))
            | beam.combiners.Count.Globally()
        )

    def empty(p: beam.Pipeline) -> Any:
        return p | beam.Create([0]) | beam.combiners.Count.Globally()

    out: dict[str, tuple[Build, int]] = {
        "empty": (empty, 1),
        "records": (records(None), ds.records),
        "batches": (batches(None), ds.records),
        "avro": (avro, ds.records),
        "trivial": (trivial, ds.records),
    }
    if quick:
        del out["trivial"]
    else:
        out[f"records mpr={BIG_POLL}"] = (records(BIG_POLL), ds.records)
        out[f"batches mpr={BIG_POLL}"] = (batches(BIG_POLL), ds.records)
    return out


#: Buckets of busy samples, by the file of the frame on top of the stack (first match wins).
BUCKETS = (
    (
        "connector: read, decompress, decode, Arrow (streamhouse_beam, pyarrow)",
        ("streamhouse_beam/", "pyarrow/", "lz4/", "zstandard"),
    ),
    ("Avro decode (fastavro, avroio)", ("fastavro/", "avroio.py")),
    (
        "coders and data plane (apache_beam/coders, data_plane, grpc)",
        ("apache_beam/coders/", "data_plane.py", "grpc/"),
    ),
    (
        "Beam per-output path (sdf_utils watermark wrapper and tracker, DoFn invoker, "
        "Timestamp, windowed values)",
        (
            "sdf_utils.py",
            "restriction_trackers.py",
            "transforms/core.py",
            "utils/timestamp.py",
            "windowed_value",
            "common.py",
            "operations.py",
        ),
    ),
    ("combine (Count / sum)", ("combiners.py", "combine_fn")),
    (
        "bundle set-up (unpickling DoFns: bz2, cloudpickle; channels, state handlers)",
        ("bz2.py", "cloudpickle", "pickler", "create_state_handler", "create_data_channel"),
    ),
    ("benchmark's own DoFns", ("benchmarks/",)),
)


class HarnessSampler:
    """Samples the stacks of this process's SDK harness threads every ``interval`` seconds.

    LOOPBACK runs the SDK harness as threads of this process. A thread counts when it is inside
    a bundle (``process_bundle`` on its stack). It is *idle* when its top frame is a wait in
    ``threading`` (a bundle of a later stage waiting on the data plane for its input while an
    earlier stage runs, or a lock); otherwise *busy*, and the function on top is credited once
    as "self", every function on the stack once as "total", and the sample goes to the first
    :data:`BUCKETS` entry that names the top frame's file.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.self_counts: collections.Counter[str] = collections.Counter()
        self.total_counts: collections.Counter[str] = collections.Counter()
        self.buckets: collections.Counter[str] = collections.Counter()
        self.samples = 0
        self.idle = 0
        self.idle_on_input = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _label(code: Any) -> str:
        path = code.co_filename
        for marker in ("site-packages/", "wt15b/", "lib/python3.11/"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        return f"{path}:{code.co_name}"

    def _run(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(self.interval):
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                stack = []
                f: Any = frame
                while f is not None:
                    stack.append(f.f_code)
                    f = f.f_back
                if not any(c.co_name == "process_bundle" for c in stack):
                    continue
                self.samples += 1
                top = self._label(stack[0])
                if top.startswith("threading.py:"):
                    self.idle += 1
                    if any(c.co_name == "input_elements" for c in stack):
                        self.idle_on_input += 1
                    continue
                self.self_counts[top] += 1
                for label in {self._label(c) for c in stack}:
                    self.total_counts[label] += 1
                bucket = next(
                    (name for name, keys in BUCKETS if any(k in top for k in keys)),
                    "other (Beam SDK harness, Python runtime)",
                )
                self.buckets[bucket] += 1

    def __enter__(self) -> HarnessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def busy(self) -> int:
        return self.samples - self.idle

    def top(self, n: int = 15) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """The top ``n`` functions by self and by total share of the busy samples."""
        busy = max(self.busy, 1)
        skip = ("threading.py", "thread_pool_executor.py", "sdk_worker.py")
        totals = [(k, v) for k, v in self.total_counts.most_common() if not k.startswith(skip)]
        return (
            [(k, v / busy) for k, v in self.self_counts.most_common(n)],
            [(k, v / busy) for k, v in totals[:n]],
        )

    def bucket_shares(self) -> list[tuple[str, float]]:
        busy = max(self.busy, 1)
        return [(k, v / busy) for k, v in self.buckets.most_common()]


def run_once(args: list[str], build: Build) -> tuple[float, int]:
    """Run ``build`` on the runner ``args`` name; ``(seconds submission-to-done, count)``."""
    with tempfile.TemporaryDirectory(prefix="bench-flink-") as tmp:
        out = pathlib.Path(tmp) / "count"
        p = beam.Pipeline(options=PipelineOptions(args))
        _ = build(p) | beam.ParDo(WriteCount(str(out)))
        began = time.perf_counter()
        result = p.run()
        state = result.wait_until_finish()
        seconds = time.perf_counter() - began
        if str(state) not in ("DONE", "PipelineState.DONE"):
            raise SystemExit(f"pipeline ended {state}")
        count = int(out.read_text()) if out.exists() else -1
    return seconds, count


def measure(
    runner_args: list[str], table: dict[str, tuple[Build, int]], repeat: int, label: str
) -> dict[str, list[float]]:
    """Every case ``repeat`` times round-robin; the samples in seconds, by case."""
    times: dict[str, list[float]] = {name: [] for name in table}
    # The first job on a fresh job service pays for class loading and JIT: not measured.
    warm, _ = run_once(runner_args, table["empty"][0])
    print(f"  [{label}] warm-up job: {warm:.2f} s", flush=True)
    for round_ in range(repeat):
        for name, (build, expected) in table.items():
            seconds, count = run_once(runner_args, build)
            if count != expected:
                raise SystemExit(f"{label} {name}: counted {count}, expected {expected}")
            times[name].append(seconds)
            print(f"  [{label}] round {round_ + 1} {name}: {seconds:.2f} s", flush=True)
    return times


def summarize(times: dict[str, list[float]], records: int) -> dict[str, dict[str, float]]:
    """Median seconds, records/s gross, and records/s net of the empty job's median."""
    fixed = statistics.median(times["empty"])
    out = {}
    for name, samples in times.items():
        median = statistics.median(samples)
        net = median - fixed
        out[name] = {
            "seconds": median,
            "gross": records / median,
            # nan when the run is not measurably longer than an empty job (too few records)
            "net": records / net if net > 0.05 * median else float("nan"),
            "min": min(samples),
            "max": max(samples),
        }
    return out


def environment_args(kind: str, pool: Any, parallelism: int) -> list[str]:
    if kind == "loopback":
        return ["--environment_type=LOOPBACK"]
    # One SDK worker process per subtask slot, so parallelism 2 gets two Python processes.
    return [*pool.environment_args(), f"--sdk_worker_parallelism={parallelism}"]


def ratios(summary: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """``{case: (gross ratio vs avro, net ratio vs avro)}`` (records/s over Avro's)."""
    out: dict[str, tuple[float, float]] = {}
    if "avro" not in summary:  # --cases without avro
        return out
    for name, got in summary.items():
        if name in ("empty", "avro"):
            continue
        out[name] = (got["gross"] / summary["avro"]["gross"], got["net"] / summary["avro"]["net"])
    return out


def profile_run(
    service: FlinkJobServerService, ds: common.Dataset, table: dict[str, tuple[Build, int]]
) -> dict[str, Any]:
    """One sampled run of records, batches, trivial and avro on Flink (LOOPBACK, p1)."""
    out: dict[str, Any] = {}
    args = [*service.pipeline_args(1), "--environment_type=LOOPBACK"]
    for name in ("records", "batches", "trivial", "avro"):
        build, expected = table[name]
        with HarnessSampler() as sampler:
            seconds, count = run_once(args, build)
        if count != expected:
            raise SystemExit(f"profile {name}: counted {count}, expected {expected}")
        self_top, total_top = sampler.top()
        out[name] = {
            "seconds": seconds,
            "samples": sampler.samples,
            "busy": sampler.busy,
            "idle_on_input": sampler.idle_on_input,
            "buckets": sampler.bucket_shares(),
            "self": self_top,
            "total": total_top,
        }
        print(f"  [profile] {name}: {seconds:.2f} s, {sampler.samples} samples", flush=True)
    return out


def _fmt_ratio(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}x"


def _fmt_rate(x: float) -> str:
    return "n/a" if x != x else f"{x:,.0f}"


def report(
    info: dict[str, str],
    ds: common.Dataset,
    settings: dict[str, Any],
    startups: dict[str, float],
    results: dict[str, dict[str, dict[str, float]]],
    raw: dict[str, dict[str, list[float]]],
    profile: dict[str, Any] | None,
    command: str,
    elapsed: float,
) -> str:
    lines = [
        "# Throughput on Flink and Prism (long-lived job services)",
        "",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        f"Data: {ds.records:,} records (16-byte keys, 90-110-byte JSON-like values) over "
        f"{ds.partitions} partitions in LZ4 segments of a local StreamHouse (SQLite metadata, "
        "`file://` store), and the same records in one Avro file (codec null) for "
        "`beam.io.ReadFromAvro`. Settings: "
        + ", ".join(f"{k} {v}" for k, v in settings.items())
        + ". ReadFromStreamHouse's default polls: records mode reads"
        f" {DEFAULT_MAX_POLL_RECORDS} records per poll, batches up to"
        f" {DEFAULT_MAX_POLL_BYTES // (1024 * 1024)} MiB of keys and values.",
        "",
        "A time is submission to done (`run()` + `wait_until_finish()`) on a job service started "
        "once; `empty` is a one-element job, i.e. the fixed cost of any job. *gross* records/s "
        "divide by the whole time, *net* by the time less the `empty` median (the steady "
        "state). Each figure is the median of the round-robin runs.",
        "",
        "## Job service start-up (once, excluded from every figure below)",
        "",
        "| service | start-up s |",
        "|---|---:|",
    ]
    for name, seconds in startups.items():
        lines.append(f"| {name} | {seconds:.1f} |")
    for label, summary in results.items():
        lines += [
            "",
            f"## {label}",
            "",
            "| pipeline | median s | min-max s | records/s gross | records/s net | "
            "vs Avro gross | vs Avro net |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        rat = ratios(summary)
        for name, got in summary.items():
            gross_r, net_r = rat.get(name, (float("nan"), float("nan")))
            vs = "" if name in ("empty", "avro") else f"{_fmt_ratio(gross_r)} | {_fmt_ratio(net_r)}"
            if name == "empty":
                lines.append(
                    f"| {name} | {got['seconds']:.2f} | {got['min']:.2f}-{got['max']:.2f} | | | | |"
                )
                continue
            if not vs:
                vs = "1.00x | 1.00x"
            lines.append(
                f"| {name} | {got['seconds']:.2f} | {got['min']:.2f}-{got['max']:.2f} | "
                f"{_fmt_rate(got['gross'])} | {_fmt_rate(got['net'])} | {vs} |"
            )
        lines.append("")
        lines.append(
            "Samples (s): "
            + "; ".join(
                f"{n} " + ", ".join(f"{s:.2f}" for s in samples)
                for n, samples in raw[label].items()
            )
        )
    scaling = _scaling(results)
    if scaling:
        lines += [
            "",
            "## Scaling from parallelism 1 to 2 (net records/s, p2 / p1)",
            "",
            "| runner | " + " | ".join(scaling["names"]) + " |",
            "|---|" + "---:|" * len(scaling["names"]),
        ]
        for base, row in scaling["rows"].items():
            lines.append(f"| {base} | " + " | ".join(_fmt_ratio(x) for x in row) + " |")
    if profile:
        lines += [
            "",
            "## Where the SDK harness spends its time (Flink, LOOPBACK, parallelism 1)",
            "",
            "Stack samples every 5 ms of the harness threads that are inside a bundle. A sample "
            "whose top frame is a `threading` wait is *idle* (mostly a later stage's bundle "
            "waiting on the data plane for its input while the read's stage runs); the others "
            "are *busy*. Shares below are of the busy samples: *self* with the function on top, "
            "*total* with it anywhere on the stack; buckets by the top frame's file.",
        ]
        for name, got in profile.items():
            lines += [
                "",
                f"### {name}: {got['seconds']:.2f} s, {got['samples']} samples, "
                f"{got['busy']} busy, {got['idle_on_input']} idle waiting for input",
                "",
                "| bucket | share of busy |",
                "|---|---:|",
            ]
            lines += [f"| {b} | {v:.0%} |" for b, v in got["buckets"]]
            lines += [
                "",
                "| self | function | | total | function |",
                "|---:|---|---|---:|---|",
            ]
            for (sf, sv), (tf, tv) in zip(got["self"], got["total"], strict=False):
                lines.append(f"| {sv:.0%} | `{sf}` | | {tv:.0%} | `{tf}` |")
    lines += [
        "",
        f"Harness run time: {elapsed:.0f} s. Command (from the repository root): `{command}`. "
        "Datasets are cached under `benchmarks/data/` (git-ignored).",
        "",
    ]
    return "\n".join(lines)


def _scaling(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    rows = {}
    names: list[str] = []
    for label, summary in results.items():
        if "parallelism 1" not in label:
            continue
        other = label.replace("parallelism 1", "parallelism 2")
        if other not in results:
            continue
        names = [n for n in summary if n != "empty"]
        rows[label.replace(", parallelism 1", "")] = [
            results[other][n]["net"] / summary[n]["net"] for n in names
        ]
    return {"names": names, "rows": rows} if rows else {}


@contextlib.contextmanager
def _maybe_pool(needed: bool) -> Iterator[Any]:
    if not needed:
        yield None
        return
    from streamhouse_beam.testing.flink_cluster import SdkWorkerPool

    here = str(pathlib.Path(__file__).resolve().parent)
    path = os.pathsep.join(x for x in (here, os.environ.get("PYTHONPATH", "")) if x)
    with SdkWorkerPool(env={"PYTHONPATH": path}) as pool:
        yield pool


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--runners", default="flink,prism,cluster")
    parser.add_argument("--parallelism", default="1,2")
    parser.add_argument("--environment", choices=("loopback", "external"), default="loopback")
    parser.add_argument(
        "--cases", default="", help="comma-separated subset of the pipelines (empty is kept)"
    )
    parser.add_argument("--profile", action="store_true", help="sample the SDK harness")
    parser.add_argument("--profile-records", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="20k records, Flink p1 and Prism")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--name", default="flink", help="report file stem (NAME.md)")
    args = parser.parse_args(argv)
    command = "python benchmarks/bench_flink.py " + " ".join(argv or sys.argv[1:])
    started = time.perf_counter()
    runners = [r for r in args.runners.split(",") if r]
    parallelisms = [int(x) for x in args.parallelism.split(",") if x]
    if args.quick:
        records, repeat = min(args.records, 20_000), 1
        runners = [r for r in runners if r != "cluster"]
        parallelisms = parallelisms[:1]
        out_dir = args.out or RESULTS / "quick"
    else:
        records, repeat = args.records, args.repeat
        out_dir = args.out or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    print("machine:", info, flush=True)
    ds = common.dataset(records, args.partitions)
    table = cases(ds, args.quick)
    if args.cases:
        wanted = {"empty", *args.cases.split(",")}
        unknown = wanted - table.keys()
        if unknown and not args.quick:  # --quick has fewer pipelines: keep what it has
            raise SystemExit(f"unknown cases {sorted(unknown)}; known: {sorted(table)}")
        table = {name: got for name, got in table.items() if name in wanted}
    startups: dict[str, float] = {}
    results: dict[str, dict[str, dict[str, float]]] = {}
    raw: dict[str, dict[str, list[float]]] = {}
    profile = None
    settings = {
        "mode": "quick" if args.quick else "full",
        "repeat": repeat,
        "environment": args.environment,
        "batch mode": "yes (bounded read)",
    }

    def record(label: str, runner_args: list[str]) -> None:
        times = measure(runner_args, table, repeat, label)
        raw[label] = times
        results[label] = summarize(times, records)

    needs_pool = "cluster" in runners or args.environment == "external"
    with _maybe_pool(needs_pool) as pool:
        if "flink" in runners:
            with FlinkJobServerService() as service:
                startups["Flink job server ([local])"] = service.startup_seconds
                print(f"flink job server up in {service.startup_seconds:.1f} s", flush=True)
                for par in parallelisms:
                    label = f"Flink [local], {args.environment}, parallelism {par}"
                    record(
                        label,
                        service.pipeline_args(par) + environment_args(args.environment, pool, par),
                    )
                if args.profile:
                    pds = common.dataset(min(args.profile_records, records), args.partitions)
                    profile = profile_run(service, pds, cases(pds, False))
        if "prism" in runners:
            with PrismService() as prism:
                startups["Prism"] = prism.startup_seconds
                print(f"prism up in {prism.startup_seconds:.1f} s", flush=True)
                record(
                    f"Prism, {args.environment}",
                    prism.pipeline_args() + environment_args(args.environment, pool, 1),
                )
        if "cluster" in runners:
            from streamhouse_beam.testing.flink_cluster import FlinkSessionCluster

            began = time.perf_counter()
            with FlinkSessionCluster(taskmanagers=2, slots_per_taskmanager=2) as cluster:
                startups["Flink session cluster (JobManager + 2 TaskManagers)"] = (
                    time.perf_counter() - began
                )
                with FlinkJobServerService(cluster.flink_master) as service:
                    startups["Flink job server (session cluster)"] = service.startup_seconds
                    for par in parallelisms:
                        label = f"Flink session cluster, external, parallelism {par}"
                        record(
                            label,
                            service.pipeline_args(par) + environment_args("external", pool, 1),
                        )
    elapsed = time.perf_counter() - started
    text = report(info, ds, settings, startups, results, raw, profile, command, elapsed)
    (out_dir / f"{args.name}.md").write_text(text)
    print()
    print("\n".join(line for line in text.splitlines() if line.startswith("| ")))
    print(f"wrote {out_dir / (args.name + '.md')}")
    return 0


if __name__ == "__main__":
    run_main(main)
