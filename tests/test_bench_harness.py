"""The benchmark harness runs end to end in --quick mode and writes its report and plots.

No timing is asserted: this only proves ``make bench`` works (about 15 s on 2 cores, so it is
marked slow and left to the full run).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parent.parent


def test_quick_harness_writes_report_with_every_ratio_and_plots(tmp_path: pathlib.Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "run_all.py"),
            "--quick",
            "--records",
            "20000",
            "--partitions",
            "2",
            "--repeat",
            "1",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "report.md").read_text()
    for needle in (
        "nproc",
        "apache-beam 2.77",
        "1. ReadFromStreamHouse vs ReadFromAvro",
        "2. ReadFromStreamHouse vs bare SDF ceiling",
        "3. batches vs ReadFromAvro",
        "4. decode only vs fastavro",
    ):
        assert needle in report
    for png in ("throughput_vs_max_poll_records.png", "throughput_vs_partitions.png"):
        assert (tmp_path / png).read_bytes().startswith(b"\x89PNG")


def _run_bench(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_runner_benchmarks_quick_on_prism_write_their_reports(tmp_path: pathlib.Path) -> None:
    # Prism only (Flink's job server would take this past the CI budget); no timing asserted.
    from streamhouse_beam.testing import runners

    try:
        runners.prism_binary()
    except runners.RunnerNotInstalledError as exc:
        pytest.skip(str(exc))
    done = _run_bench("bench_flink.py", "--quick", "--runners", "prism", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "flink.md").read_text()
    for needle in (
        "## Job service start-up",
        "| Prism |",
        "| records |",
        "| batches |",
        "| avro |",
    ):
        assert needle in report
    done = _run_bench("bench_freshness.py", "--quick", "--segments", "6", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "freshness.md").read_text()
    assert "| Prism | 6 |" in report
    assert (tmp_path / "freshness.png").read_bytes().startswith(b"\x89PNG")
