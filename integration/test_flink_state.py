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
import time
import zipfile
from collections import Counter

import apache_beam as beam
import pytest
from _runners_support import (
    REPO_ROOT,
    CountUpTo,
    ensure_runners,
    toy_sdf_expected,
    wait_for,
)
from apache_beam.options.pipeline_options import PipelineOptions
from soak_flink_state import AppendOffsets, FlinkRest, read_offsets, write_flink_conf

from streamhouse_beam.beam import ReadFromStreamHouse
from streamhouse_beam.beam._runner_checks import has_runner_fixes
from streamhouse_beam.testing import runners
from streamhouse_beam.testing.local import LocalStreamHouse
from streamhouse_beam.testing.servers import free_port

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
        # Bundle finalization bound to the checkpoint holding the bundle (patch 0005).
        "org/apache/beam/runners/flink/translation/wrappers/streaming/"
        "ExecutableStageDoFnOperator$CheckpointBoundFinalizer.class",
        "org/apache/beam/runners/flink/translation/functions/FlinkExecutableStageFunction.class",
    ):
        assert cls in names
    # The launcher's manifest and the classpath for Flink JVMs both put the patch first.
    with zipfile.ZipFile(server.jar) as launcher:
        manifest = launcher.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "")
    class_path = next(line for line in manifest.splitlines() if line.startswith("Class-Path:"))
    assert class_path.split()[1] == "patches/runner-fixes.jar"
    assert server.classpath()[0] == str(server.patch_jar)
    # ... which is what the read's build-time check looks for before warning.
    assert has_runner_fixes(str(server.jar))


def test_batch_mode_replays_every_residual_through_the_patched_stage_function() -> None:
    # Batch Flink keeps residuals in memory (FlinkExecutableStageFunction) and replays them
    # until none is left; the patch changed where they are kept, so every offset must still
    # come exactly once.
    from apache_beam.testing.util import assert_that, equal_to

    sizes = [5, 8, 13]
    with beam.Pipeline(options=PipelineOptions(runners.flink_pipeline_args())) as p:
        out = p | beam.Create(sizes) | beam.ParDo(CountUpTo(defer_every=2))
        assert_that(out, equal_to(toy_sdf_expected(sizes)))


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


def _unpatched_launcher(server: runners.FlinkJobServer, where: pathlib.Path) -> pathlib.Path:
    """A launcher jar for the same job server without the patch jar: Beam 2.62.0 as released."""
    where.mkdir()
    (where / "lib").symlink_to(server.jar.parent / "lib")
    jars = sorted(f"lib/{jar.name}" for jar in (where / "lib").glob("*.jar"))

    def wrap(line: str) -> str:  # manifest lines: 72 bytes, continued after one space
        parts = [line[:72]] + [" " + line[i : i + 71] for i in range(72, len(line), 71)]
        return "\r\n".join(parts) + "\r\n"

    manifest = (
        wrap("Manifest-Version: 1.0")
        + wrap("Main-Class: org.apache.beam.runners.flink.FlinkJobServerDriver")
        + wrap("Class-Path: " + " ".join(jars))
    )
    launcher = where / "job-server.jar"
    with zipfile.ZipFile(launcher, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    return launcher


def test_a_savepoint_of_the_unpatched_runner_resumes_on_the_patched_one(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Users upgrading a running job: the unpatched runner kept each pending residual in a state
    # of its own; the patched runner must find them, or every partition would stop reading.
    server = runners.flink_job_server()
    if server.kind != "assembled" or server.patch_jar is None:
        pytest.skip("needs the patched, assembled job server from .ci/fetch-runners")
    rest_port = free_port()
    conf = tmp_path / "flink-conf"
    write_flink_conf(conf, rest_port)
    monkeypatch.setenv("FLINK_CONF_DIR", str(conf))
    metadata_url, storage_url = f"sqlite:///{tmp_path}/metadata.db", f"file://{tmp_path}/segments"
    house = LocalStreamHouse(metadata_url, storage_url, segment_max_records=10)
    house.create_schema()
    house.create_topic("upgrade", 4)
    appended: set[tuple[int, int]] = set()

    def append() -> None:
        for partition in range(4):
            start = house.next_offset("upgrade", partition)
            values = [(None, f"{partition}/{o}") for o in range(start, start + 10)]
            offsets = house.append("upgrade", partition, values, flush=True)
            appended.update((partition, o) for o in offsets)

    out = tmp_path / "out.txt"

    def run(launcher: pathlib.Path) -> beam.runners.runner.PipelineResult:
        args = runners.flink_pipeline_args(
            streaming=True,
            checkpointing_interval_ms=1000,
            parallelism=1,
            extra=[
                f"--flink_job_server_jar={launcher}",
                "--state_backend=filesystem",
                f"--state_backend_storage_path=file://{tmp_path}/checkpoints",
            ],
        )
        p = beam.Pipeline(options=PipelineOptions(args))
        _ = (
            p
            | ReadFromStreamHouse(
                "upgrade",
                metadata_url=metadata_url,
                storage_url=storage_url,
                organization_id=house.organization_id,
                commit_offsets_group="upgrade-group",
            )
            | beam.ParDo(AppendOffsets(str(out)))
        )
        return p.run()

    rest = FlinkRest(rest_port)

    def running_job() -> str:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            job = rest.running_job()
            if job is not None:
                return job
            time.sleep(1)
        pytest.fail(f"no running Flink job on 127.0.0.1:{rest_port} after 180 s")

    append()
    first = run(_unpatched_launcher(server, tmp_path / "unpatched"))
    job = running_job()
    wait_for(lambda: read_offsets(out) >= appended, timeout=180, what="the first 40 records")
    savepoint = rest.stop_with_savepoint(job, tmp_path / "savepoints")
    first.wait_until_finish(duration=60_000)
    append()
    # --savepoint_path applies to a remote --flink_master only; the embedded Flink restores
    # from execution.savepoint.path in its flink-conf.yaml.
    write_flink_conf(conf, rest_port, f"execution.savepoint.path: {savepoint}")
    second = run(server.jar)
    try:
        job = running_job()
        assert rest.restored_from(job) == savepoint
        wait_for(lambda: read_offsets(out) >= appended, timeout=180, what="all 80 records")
        time.sleep(2)
    finally:
        second.cancel()
    lines = out.read_text(encoding="utf-8").split()
    pairs = Counter(zip(lines[::2], lines[1::2], strict=True))
    assert read_offsets(out) == appended
    # The restored job resumed where the savepoint stood: nothing of the first 40 read twice.
    assert [pair for pair, n in pairs.items() if n > 1 and int(pair[1]) < 10] == []
