"""Where ``make runners`` (``.ci/fetch-runners``) keeps the runners it builds, and finding them.

The cache is ``$STREAMHOUSE_BEAM_CACHE`` when set, else ``~/.cache/streamhouse-beam``; Prism
is ``prism/prism`` in it. The command line and the examples use this module to run on the
cached Prism without network access (Beam's own ``PrismRunner`` downloads its binary from
GitHub unless ``--prism_location`` is given); :mod:`streamhouse_beam.testing.runners` uses it
for the test runners. It imports nothing from Beam.
"""

from __future__ import annotations

import os
import pathlib

from streamhouse_beam.errors import RunnerNotInstalledError

__all__ = ["FETCH_HINT", "cache_dir", "prism_binary"]

#: What a :class:`~streamhouse_beam.errors.RunnerNotInstalledError` tells the user to run.
FETCH_HINT = "run `make runners` (or `bash .ci/fetch-runners`) in a streamhouse-beam checkout"


def cache_dir() -> pathlib.Path:
    """The runner cache: ``$STREAMHOUSE_BEAM_CACHE``, or ``~/.cache/streamhouse-beam``."""
    configured = os.environ.get("STREAMHOUSE_BEAM_CACHE")
    if configured:
        return pathlib.Path(configured).expanduser()
    return pathlib.Path.home() / ".cache" / "streamhouse-beam"


def prism_binary() -> str:
    """Path of the cached Prism binary, for ``--prism_location``.

    Raises:
        RunnerNotInstalledError: there is no executable Prism binary in the cache.
    """
    path = cache_dir() / "prism" / "prism"
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise RunnerNotInstalledError(
            f"no Prism binary at {path}; {FETCH_HINT} to build it, or pass "
            "--prism_location=PATH_OR_URL (a Prism binary, or Beam's release page "
            f"https://github.com/apache/beam/releases/tag/v{_beam_version()}, which Beam "
            "downloads)"
        )
    return str(path)


def _beam_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("apache-beam")
    except metadata.PackageNotFoundError:
        return "<apache-beam version>"
