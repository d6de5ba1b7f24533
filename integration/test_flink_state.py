"""A tailing read on Flink keeps a checkpoint of constant size (apache/beam#27648, docs/flink.md).

The job server from ``.ci/fetch-runners`` carries a runner patch (``.ci/patches/``) that keeps a
splittable DoFn's self-checkpoint residuals in one state per key instead of registering a new
state per residual. These tests check that the patch is built into the job server, and run the
soak (``integration/soak_flink_state.py``, ``make soak`` for 30 minutes) for a few minutes: the
latest checkpoint must not grow, and the output and the commits must stay exact.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import zipfile

import pytest
from _runners_support import REPO_ROOT, ensure_runners

from streamhouse_beam.testing import runners

pytestmark = [pytest.mark.slow, pytest.mark.runner]

SOAK = REPO_ROOT / "integration" / "soak_flink_state.py"
#: long enough for several hundred self-checkpoints; the unpatched runner grows by about
#: 50 KB per second on this workload (docs/flink.md), far beyond the 16 KiB slack
CI_MINUTES = 3.5


@pytest.fixture(scope="module", autouse=True)
def _runners_fetched() -> None:
    ensure_runners()


def test_the_job_server_runs_the_patched_runner_classes_first() -> None:
    server = runners.flink_job_server()
    if server.kind != "assembled":
        pytest.skip(f"a {server.kind} job server is not patched by .ci/fetch-runners")
    assert server.patch_jar is not None and server.patch_jar.is_file()
    assert server.patches, "flink-job-server.env records no patch fingerprint"
    with zipfile.ZipFile(server.patch_jar) as jar:
        names = set(jar.namelist())
    for cls in (
        "org/apache/beam/runners/fnexecution/control/"
        "BundleCheckpointHandlers$StateAndTimerBundleCheckpointHandler.class",
        "org/apache/beam/runners/flink/translation/wrappers/streaming/"
        "ExecutableStageDoFnOperator.class",
        "org/apache/beam/runners/flink/translation/functions/FlinkExecutableStageFunction.class",
    ):
        assert cls in names
    # The launcher's manifest and the classpath for Flink JVMs both put the patch first.
    with zipfile.ZipFile(server.jar) as launcher:
        manifest = launcher.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "")
    class_path = next(line for line in manifest.splitlines() if line.startswith("Class-Path:"))
    assert class_path.split()[1] == "patches/runner-fixes.jar"
    assert server.classpath()[0] == str(server.patch_jar)


def test_a_tailing_read_keeps_its_flink_checkpoint_size(tmp_path: pathlib.Path) -> None:
    summary_path = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", str(CI_MINUTES), "--json", str(summary_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CI_MINUTES * 60 + 420,
        check=False,
    )
    if not summary_path.exists():
        pytest.fail(f"the soak wrote no summary (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    samples = summary["samples"]
    sizes = [(s["elapsed_s"], s["state_size"]) for s in samples]
    assert len(samples) >= 10, f"too few checkpoint samples: {sizes}"
    # Bounded: the size at the end is within 10 % (+16 KiB) of the size at one minute ...
    assert summary["bounded"], f"the checkpoint grew: {sizes}"
    # ... and no sample after the first minute exceeds that limit either.
    assert all(size <= summary["limit"] for elapsed, size in sizes if elapsed >= 60), sizes
    assert summary["exact"], (
        f"missing {summary['missing']}, unexpected {summary['unexpected']} "
        f"of {summary['records_appended']} appended"
    )
    assert summary["commits_at_end"], f"committed {summary['committed']}, ends {summary['ends']}"
    assert proc.returncode == 0, proc.stdout[-2000:]
