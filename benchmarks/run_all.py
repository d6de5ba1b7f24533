"""The benchmark harness ``make bench`` runs: throughput pairs, sweeps, report and plots.

On FnApiRunner with one worker, in this one process, with medians of ``--repeat`` round-robin
runs per pair (issue 7):

1. ``ReadFromStreamHouse -> Count`` vs ``beam.io.ReadFromAvro -> Count`` (goal >= 1.3x);
2. ``ReadFromStreamHouse -> Count`` vs a bare SDF emitting pre-built tuples (goal >= 0.9x);
3. ``output="batches" -> sum(num_rows)`` vs ``ReadFromAvro -> Count`` (goal >= 15x), and the
   same batches with a hand-tuned ``max_poll_records`` for comparison;
4. decode only vs fastavro's plain reader (``bench_decode.run``).

Both reads use their default settings (issue 15: the figures must hold for a user who tunes
nothing). Then a sweep of the batches' ``max_poll_bytes`` (round-robin, medians of
``--repeat``: how the default byte target was chosen) and sweeps with one run per point:
records/s against ``max_poll_records`` and against the partition count, for records and
batches. Writes
``benchmarks/results/report.md`` and the PNG plots next to it (``--quick`` writes under
``benchmarks/results/quick/`` so a smoke run never overwrites the real figures).

Usage: ``python benchmarks/run_all.py [--records 1000000] [--partitions 4] [--repeat 5]
[--quick] [--out DIR]``
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import bench_decode
import bench_throughput as bt
import common

from streamhouse_beam.settings import DEFAULT_MAX_POLL_BYTES, DEFAULT_MAX_POLL_RECORDS

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
#: The ceiling SDF checkpoints every this many records, as the records pair (default) does.
CEILING_MAX_POLL = DEFAULT_MAX_POLL_RECORDS
#: max_poll_records of the hand-tuned batches pair (the figure earlier reports published):
#: 50k-record Arrow batches, about 6 MB here.
TUNED_BATCHES_MAX_POLL = 50_000
#: max_poll_bytes points of the batches' byte-target sweep.
BYTE_TARGETS = [1 << 20, 2 << 20, 4 << 20, 8 << 20, 16 << 20, 32 << 20]
QUICK_BYTE_TARGETS = [64 << 10, 1 << 20, 8 << 20]

RECORDS_PAIR = "ReadFromStreamHouse -> Count"
BATCHES_PAIR = 'ReadFromStreamHouse(output="batches") -> sum(num_rows)'
TUNED_PAIR = (
    f'ReadFromStreamHouse(output="batches", max_poll_records={TUNED_BATCHES_MAX_POLL}) '
    "-> sum(num_rows)"
)


def _ratio_line(name: str, ratio: float, goal: float) -> str:
    verdict = "met" if ratio >= goal else "NOT met"
    return f"| {name} | **{ratio:.2f}x** | >= {goal}x | {verdict} |"


def run_pairs(ds: common.Dataset, repeat: int) -> dict[str, dict[str, Any]]:
    cases = {
        RECORDS_PAIR: bt.streamhouse_count(ds, None),
        "ReadFromAvro -> Count": bt.avro_count(ds),
        "bare SDF, pre-built tuples -> Count": bt.ceiling_count(ds, CEILING_MAX_POLL),
        BATCHES_PAIR: bt.batches_rows(ds, None),
        TUNED_PAIR: bt.batches_rows(ds, TUNED_BATCHES_MAX_POLL),
    }
    return bt.measure(cases, ds.records, repeat)


def run_byte_sweep(
    ds: common.Dataset, targets: list[int], repeat: int
) -> list[tuple[int, float, float]]:
    """``[(max_poll_bytes, median records/s, median s)]`` of batches, round-robin runs."""
    cases = {str(target): bt.batches_rows(ds, None, target) for target in targets}
    got = bt.measure(cases, ds.records, repeat)
    out = []
    for target in targets:
        point = got[str(target)]
        out.append((target, point["records_per_s"], point["seconds"]))
        print(f"  max_poll_bytes={target:,}: {point['records_per_s']:,.0f} rec/s")
    return out


def run_sweeps(
    records: int,
    partitions: int,
    polls: list[int],
    partition_counts: list[int],
    partition_records: int,
) -> dict[str, list[tuple[int, float, float]]]:
    """``{"max_poll_records": [(x, records/s, batches/s)], "partitions": [...]}``.

    The ``max_poll_records`` sweep reads ``records`` records; the partition sweep reads
    ``partition_records`` (a dataset is generated per partition count).
    """
    ds = common.dataset(records, partitions)
    by_poll = []
    for mpr in polls:
        got = bt.measure(
            {"records": bt.streamhouse_count(ds, mpr), "batches": bt.batches_rows(ds, mpr)},
            records,
            1,
        )
        by_poll.append((mpr, got["records"]["records_per_s"], got["batches"]["records_per_s"]))
        print(f"  max_poll_records={mpr}: {by_poll[-1][1]:,.0f} / {by_poll[-1][2]:,.0f} rec/s")
    by_parts = []
    for count in partition_counts:
        pds = common.dataset(partition_records, count)
        got = bt.measure(
            {
                "records": bt.streamhouse_count(pds, None),
                "batches": bt.batches_rows(pds, None),
            },
            partition_records,
            1,
        )
        by_parts.append((count, got["records"]["records_per_s"], got["batches"]["records_per_s"]))
        print(f"  partitions={count}: {by_parts[-1][1]:,.0f} / {by_parts[-1][2]:,.0f} rec/s")
    return {"max_poll_records": by_poll, "partitions": by_parts}


def plot(
    sweeps: dict[str, list[tuple[int, float, float]]],
    byte_sweep: list[tuple[int, float, float]],
    out: pathlib.Path,
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [p[0] / (1 << 20) for p in byte_sweep],
        [p[1] for p in byte_sweep],
        marker="s",
        label='output="batches"',
    )
    ax.axvline(DEFAULT_MAX_POLL_BYTES / (1 << 20), color="grey", linestyle=":", label="default")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("max_poll_bytes (MiB)")
    ax.set_ylabel("records/s (FnApiRunner, 1 worker)")
    ax.set_title("Batches throughput vs max_poll_bytes (medians)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "throughput_vs_max_poll_bytes.png", dpi=100)
    plt.close(fig)
    names.append("throughput_vs_max_poll_bytes.png")
    for key, xlabel, logx in (
        ("max_poll_records", "max_poll_records", True),
        ("partitions", "partitions", False),
    ):
        points = sweeps[key]
        fig, ax = plt.subplots(figsize=(6, 4))
        xs = [p[0] for p in points]
        ax.plot(xs, [p[1] for p in points], marker="o", label='output="records"')
        ax.plot(xs, [p[2] for p in points], marker="s", label='output="batches"')
        if logx:
            ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("records/s (FnApiRunner, 1 worker)")
        ax.set_title(f"ReadFromStreamHouse throughput vs {xlabel}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        name = f"throughput_vs_{key}.png"
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        names.append(name)
    return names


def report(
    info: dict[str, str],
    ds: common.Dataset,
    repeat: int,
    pairs: dict[str, dict[str, Any]],
    decode_rows: list[tuple[str, float, int]],
    byte_sweep: list[tuple[int, float, float]],
    sweeps: dict[str, list[tuple[int, float, float]]],
    sweep_records: int,
    partition_records: int,
    plots: list[str],
    elapsed: float,
) -> str:
    sh = pairs[RECORDS_PAIR]["seconds"]
    avro = pairs["ReadFromAvro -> Count"]["seconds"]
    ceiling = pairs["bare SDF, pre-built tuples -> Count"]["seconds"]
    batches = pairs[BATCHES_PAIR]["seconds"]
    tuned = pairs[TUNED_PAIR]["seconds"]
    decode_ours = min(t for name, t, _ in decode_rows if name.startswith("streamhouse"))
    decode_avro = next(t for name, t, _ in decode_rows if name.endswith("codec null"))
    lines = [
        "# Throughput report",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "",
        f"Data: {ds.records:,} records (16-byte keys, 90-110-byte JSON-like values) over "
        f"{ds.partitions} partitions in LZ4 segments of a local StreamHouse (SQLite metadata, "
        "`file://` store), and the same records in one Avro file (codec null). Every pipeline "
        "runs on FnApiRunner with one worker in the harness process; a time is the wall clock "
        "of `run()` + `wait_until_finish()` (runner start-up included on every side), the "
        f"median of {repeat} round-robin runs. Both reads use their default settings "
        f"(records: {DEFAULT_MAX_POLL_RECORDS} records per poll; batches: polls of up to "
        f"{DEFAULT_MAX_POLL_BYTES / (1 << 20):g} MiB of keys and values), except the batches "
        f"row marked max_poll_records={TUNED_BATCHES_MAX_POLL}; the ceiling checkpoints every "
        f"{CEILING_MAX_POLL} records.",
        "",
        "| pipeline | median s | records/s | runs (s) |",
        "|---|---:|---:|---|",
    ]
    for name, got in pairs.items():
        samples = ", ".join(f"{s:.2f}" for s in got["samples"])
        lines.append(f"| {name} | {got['seconds']:.2f} | {got['records_per_s']:,.0f} | {samples} |")
    lines += [
        "",
        "| ratio | value | goal | |",
        "|---|---:|---:|---|",
        _ratio_line("1. ReadFromStreamHouse vs ReadFromAvro", avro / sh, 1.3),
        _ratio_line("2. ReadFromStreamHouse vs bare SDF ceiling", ceiling / sh, 0.9),
        _ratio_line("3. batches vs ReadFromAvro", avro / batches, 15),
        _ratio_line(
            f"3b. batches (max_poll_records {TUNED_BATCHES_MAX_POLL}) vs ReadFromAvro",
            avro / tuned,
            15,
        ),
        _ratio_line("4. decode only vs fastavro (codec null)", decode_avro / decode_ours, 1.5),
        "",
        "## Decode only (bench_decode)",
        "",
        "| reader | seconds | records/s |",
        "|---|---:|---:|",
    ]
    for name, seconds, _ in decode_rows:
        lines.append(f"| {name} | {seconds:.3f} | {ds.records / seconds:,.0f} |")
    lines += [
        "",
        "## Batches: byte target per poll",
        "",
        f'{ds.records:,} records over {ds.partitions} partitions, `output="batches"` with '
        f"`max_poll_bytes` set, median of {repeat} round-robin runs; the default is "
        f"{DEFAULT_MAX_POLL_BYTES / (1 << 20):g} MiB.",
        "",
        "| max_poll_bytes | records/s | median s |",
        "|---:|---:|---:|",
    ]
    for target, rate, seconds in byte_sweep:
        lines.append(f"| {target / (1 << 20):g} MiB | {rate:,.0f} | {seconds:.3f} |")
    lines += [
        "",
        "## Sweeps (one run per point)",
        "",
        f"{sweep_records:,} records over {ds.partitions} partitions:",
        "",
        "| max_poll_records | records/s, records | records/s, batches |",
        "|---:|---:|---:|",
    ]
    for x, r, b in sweeps["max_poll_records"]:
        lines.append(f"| {x:,} | {r:,.0f} | {b:,.0f} |")
    lines += [
        "",
        f"{partition_records:,} records:",
        "",
        "| partitions | records/s, records (defaults) | records/s, batches (defaults) |",
        "|---:|---:|---:|",
    ]
    for x, r, b in sweeps["partitions"]:
        lines.append(f"| {x} | {r:,.0f} | {b:,.0f} |")
    lines += ["", *[f"![{name}]({name})" for name in plots], ""]
    lines += [
        f"Harness run time: {elapsed:.0f} s. Reproduce: `make bench` "
        "(`.venv/bin/python benchmarks/run_all.py`); datasets are cached under "
        "`benchmarks/data/` (git-ignored).",
        "",
    ]
    notes = RESULTS / "profile_notes.md"
    if notes.exists():
        lines += [notes.read_text()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100k records, small sweeps")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="report directory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.quick:
        records, repeat = min(args.records, 100_000), args.repeat
        sweep_records, polls, partition_counts = 20_000, [100, 1_000, 10_000], [1, 2]
        partition_records = 20_000
        byte_targets = QUICK_BYTE_TARGETS
        out = args.out or RESULTS / "quick"
    else:
        records, repeat = args.records, args.repeat
        sweep_records, partition_records = records, min(records, 200_000)
        polls, partition_counts = [500, 2_000, 5_000, 20_000, 50_000], [1, 2, 4, 8]
        byte_targets = BYTE_TARGETS
        out = args.out or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    info = common.machine_info()
    print("machine:", info)
    ds = common.dataset(records, args.partitions)
    print(f"pairs: {records:,} records, {args.partitions} partitions, median of {repeat}")
    pairs = run_pairs(ds, repeat)
    for name, got in pairs.items():
        print(f"  {name}: {got['seconds']:.2f} s, {got['records_per_s']:,.0f} records/s")
    decode_rows, _ = bench_decode.run(records, repeat)
    print(f"batches max_poll_bytes sweep (median of {repeat}):")
    byte_sweep = run_byte_sweep(ds, byte_targets, repeat)
    print("sweeps:")
    sweeps = run_sweeps(sweep_records, args.partitions, polls, partition_counts, partition_records)
    plots = plot(sweeps, byte_sweep, out)
    text = report(
        info,
        ds,
        repeat,
        pairs,
        decode_rows,
        byte_sweep,
        sweeps,
        sweep_records,
        partition_records,
        plots,
        time.perf_counter() - started,
    )
    (out / "report.md").write_text(text)
    print()
    print("\n".join(line for line in text.splitlines() if line.startswith("| ")))
    print(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
