"""The package builds an sdist and a wheel, and the wheel works in a clean virtualenv.

This is what ``--setup_file`` / ``--extra_package`` ship to Dataflow workers, so a module or
data file missing from the distributions would only show up there. The build runs without
isolation (the dev venv already has setuptools) on a copy of the source tree, so nothing is
downloaded and the work tree is not touched. The wheel is built from the sdist, which proves
the sdist is complete. The clean venv gets the wheel with ``--no-deps --no-index``; only after
that does a ``.pth`` line put the dev venv's site-packages *behind* its own, so the
dependencies (apache-beam, lz4, ...) resolve without a download while ``streamhouse_beam``
itself must come from the wheel.
"""

from __future__ import annotations

import email.parser
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile

import pytest

pytestmark = [pytest.mark.slow]

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURE_SEGMENTS = REPO_ROOT / "tests" / "fixtures" / "segments"


def _package_files() -> set[str]:
    """Every module and data file of the package on disk, as ``streamhouse_beam/...`` paths."""
    root = REPO_ROOT / "streamhouse_beam"
    found = set()
    for path in root.rglob("*"):
        if "__pycache__" in path.parts or not path.is_file():
            continue
        if path.suffix in {".py", ".sql", ".c"} or path.name == "py.typed":
            found.add(path.relative_to(REPO_ROOT).as_posix())
    return found


def _build(
    tmp_path_factory: pytest.TempPathFactory, env: dict[str, str] | None = None
) -> dict[str, pathlib.Path]:
    """Build the sdist, then the wheel from it, from a copy of the source tree."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "setup.py", "LICENSE"):
        shutil.copy2(REPO_ROOT / name, src / name)
    shutil.copytree(
        REPO_ROOT / "streamhouse_beam",
        src / "streamhouse_beam",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.so"),
    )
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--no-isolation",
            # build-system.requires lists "wheel", which setuptools >= 70.1 no longer needs.
            "--skip-dependency-check",
            "--outdir",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout}\n{proc.stderr}"
    sdists = list(out.glob("streamhouse_beam-*.tar.gz"))
    wheels = list(out.glob("streamhouse_beam-*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return {"sdist": sdists[0], "wheel": wheels[0], "log": out / "build.log"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    return _build(tmp_path_factory)


@pytest.fixture(scope="module")
def no_compiler_dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pathlib.Path]:
    """The distributions as a machine without a working C compiler builds them."""
    env = {**os.environ, "CC": "false", "LDSHARED": "false"}
    return _build(tmp_path_factory, env)


def _install(tmp_path_factory: pytest.TempPathFactory, wheel: pathlib.Path) -> pathlib.Path:
    venv = tmp_path_factory.mktemp("venv") / "clean"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, f"pip install of the wheel failed:\n{proc.stdout}\n{proc.stderr}"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dev_site = sysconfig.get_paths()["purelib"]
    # Appended after the venv's own site-packages: dependencies only, never our package.
    (pathlib.Path(site) / "zz_dev_dependencies.pth").write_text(dev_site + "\n")
    return venv


@pytest.fixture(scope="module")
def clean_venv(
    tmp_path_factory: pytest.TempPathFactory, dists: dict[str, pathlib.Path]
) -> pathlib.Path:
    return _install(tmp_path_factory, dists["wheel"])


def test_sdist_contains_every_module_and_data_file(dists: dict[str, pathlib.Path]) -> None:
    with tarfile.open(dists["sdist"]) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = _package_files() - names
    assert not missing, f"missing from the sdist: {sorted(missing)}"
    assert {"pyproject.toml", "README.md", "LICENSE"} <= names


def test_wheel_contains_every_module_and_declares_the_cli(dists: dict[str, pathlib.Path]) -> None:
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = set(whl.namelist())
        info_dir = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        entry_points = whl.read(f"{info_dir}/entry_points.txt").decode()
        metadata = email.parser.Parser().parsestr(whl.read(f"{info_dir}/METADATA").decode())
    missing = _package_files() - names
    assert not missing, f"missing from the wheel: {sorted(missing)}"
    assert "streamhouse-beam = streamhouse_beam.cli:main" in entry_points
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("apache-beam") for r in requires), requires
    # The license travels with the wheel: its expression in the metadata, its text beside it.
    assert metadata["License-Expression"] == "Apache-2.0"
    assert f"{info_dir}/licenses/LICENSE" in names
    # The wheel ships the package only, never the repository's test suites.
    assert not any(name.startswith(("tests/", "integration/")) for name in names)


def test_installed_wheel_imports_from_the_clean_venv(clean_venv: pathlib.Path) -> None:
    code = (
        "import streamhouse_beam, streamhouse_beam.beam, streamhouse_beam.cli; "
        "print(streamhouse_beam.__file__); print(streamhouse_beam.__version__)"
    )
    proc = subprocess.run(
        [str(clean_venv / "bin" / "python"), "-c", code],
        capture_output=True,
        text=True,
        check=False,
        cwd=clean_venv,  # not the repo: the source tree must not shadow the install
    )
    assert proc.returncode == 0, proc.stderr
    module_file, version = proc.stdout.split()
    assert pathlib.Path(module_file).resolve().is_relative_to(clean_venv.resolve())
    assert version == "0.1.0"


def test_installed_console_script_runs(clean_venv: pathlib.Path) -> None:
    script = clean_venv / "bin" / "streamhouse-beam"
    assert script.exists(), "the wheel did not install the streamhouse-beam console script"
    help_run = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, check=False, cwd=clean_venv
    )
    assert help_run.returncode == 0, help_run.stderr
    for command in ("inspect", "topics", "read"):
        assert command in help_run.stdout
    segment = FIXTURE_SEGMENTS / "gapped_offsets_none.seg"
    inspect_run = subprocess.run(
        [str(script), "inspect", str(segment)],
        capture_output=True,
        text=True,
        check=False,
        cwd=clean_venv,
    )
    assert inspect_run.returncode == 0, inspect_run.stderr
    assert inspect_run.stdout.strip(), "inspect printed nothing for a golden segment"


def _extensions(wheel: pathlib.Path) -> set[str]:
    with zipfile.ZipFile(wheel) as whl:
        return {
            name.split("/")[-1].split(".")[0]
            for name in whl.namelist()
            if name.endswith((".so", ".pyd"))
        }


def test_the_wheel_carries_both_c_accelerators_when_a_compiler_works(
    dists: dict[str, pathlib.Path],
) -> None:
    if not (shutil.which(sysconfig.get_config_var("CC").split()[0]) or shutil.which("cc")):
        pytest.skip("no C compiler on this machine")
    assert _extensions(dists["wheel"]) == {"_speedups", "_emit_speedups"}


# What a Dataflow worker without a compiler runs: read a topic in records and batches mode.
_READ_WITHOUT_EXTENSIONS = """
import sys, tempfile
import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from streamhouse_beam import ReadFromStreamHouse, StopPosition
from streamhouse_beam.beam import _emit as emit
from streamhouse_beam.segment import decode
from streamhouse_beam.testing.local import LocalStreamHouse

assert not emit.ACCELERATED and not decode.speedups_active(), "an extension was installed"
root = tempfile.mkdtemp()
metadata_url, storage_url = f"sqlite:///{root}/metadata.db", f"file://{root}/segments"
lsh = LocalStreamHouse(metadata_url, storage_url)
lsh.create_schema()
lsh.create_topic("t", 2)
for p in (0, 1):
    lsh.append("t", p, [f"v{p}-{i}".encode() for i in range(300)], flush=True)
for output in ("records", "batches"):
    with beam.Pipeline(
        runner=FnApiRunner(), options=PipelineOptions(["--direct_num_workers=1"])
    ) as pipeline:
        read = pipeline | ReadFromStreamHouse(
            "t", metadata_url=metadata_url, storage_url=storage_url,
            stop=StopPosition.latest(), output=output, max_poll_records=128,
        )
        sizes = read | beam.Map(lambda e: e.num_rows if output == "batches" else 1)
        total = sizes | beam.CombineGlobally(sum)
        total | beam.Map(lambda n: print("count", n))
"""


def test_a_wheel_built_without_a_compiler_installs_and_reads(
    tmp_path_factory: pytest.TempPathFactory, no_compiler_dists: dict[str, pathlib.Path]
) -> None:
    assert _extensions(no_compiler_dists["wheel"]) == set()
    venv = _install(tmp_path_factory, no_compiler_dists["wheel"])
    proc = subprocess.run(
        [str(venv / "bin" / "python"), "-c", _READ_WITHOUT_EXTENSIONS],
        capture_output=True,
        text=True,
        check=False,
        cwd=venv,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("count 600") == 2, proc.stdout
