"""Running Python the way a user does: ``python <script or -m module> ...`` in a subprocess.

The example scripts and Beam YAML's ``apache_beam.yaml.main`` are exercised as commands, not
imported, so what the README tells users to type is what the tests run.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys


def run_python(
    *args: str, cwd: pathlib.Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run this interpreter with ``args`` in ``cwd`` (at most 300 s), capturing its output.

    Args:
        args: what follows ``python`` on the command line.
        cwd: the working directory.
        check: fail the test, quoting the end of stderr, unless the command exits 0.
    """
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, f"python {' '.join(args[:2])} failed:\n{proc.stderr[-4000:]}"
    return proc
