"""The runner a pipeline started from this machine uses: the cached Prism, found by itself.

Beam's ``PrismRunner`` starts a Prism binary it downloads from GitHub (and fails offline with
``Unable to fetch remote prism binary``) unless ``--prism_location`` says where one is.
``make runners`` builds Prism into the runner cache (:mod:`streamhouse_beam._runner_cache`);
:func:`local_pipeline_args` completes a command line's pipeline options with it, so
``--runner=PrismRunner`` works offline with nothing else to type. The ``streamhouse-beam``
command and the examples pass their Beam arguments through it::

    options = PipelineOptions(local_pipeline_args(beam_args, default_runner="PrismRunner"))

A ``--prism_location`` given on the command line is kept as it is.

Beam's portable runners open the job's state and message streams with ``--job_server_timeout``
(300 s by default) as their deadline, so ``wait_until_finish()`` of a tailing pipeline on Prism
fails with ``DEADLINE_EXCEEDED`` after five minutes although the job runs on. For Prism
:func:`local_pipeline_args` therefore sets a deadline far beyond any run, unless one is given.
"""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    PrismRunnerOptions,
    StandardOptions,
)

from streamhouse_beam._runner_cache import prism_binary

__all__ = [
    "PRISM_JOB_SERVER_TIMEOUT_SECONDS",
    "is_prism",
    "local_pipeline_args",
    "prism_available",
]

# The spellings Beam's runner lookup accepts for Prism, compared case-insensitively.
_PRISM_NAMES = frozenset({"prism", "prismrunner"})

#: ``--job_server_timeout`` for Prism: ten years, so the result's streams outlive a tailing run.
PRISM_JOB_SERVER_TIMEOUT_SECONDS = 10 * 365 * 24 * 3600


def is_prism(runner: object) -> bool:
    """Whether ``runner`` (a ``--runner`` value or a runner object) names Beam's Prism runner."""
    if runner is None:
        return False
    name = runner if isinstance(runner, str) else type(runner).__name__
    return name.rsplit(".", 1)[-1].lower() in _PRISM_NAMES


def prism_available() -> bool:
    """Whether ``make runners`` has built Prism into the runner cache."""
    from streamhouse_beam.errors import RunnerNotInstalledError

    try:
        prism_binary()
    except RunnerNotInstalledError:
        return False
    return True


def local_pipeline_args(argv: Sequence[str], *, default_runner: str | None = None) -> list[str]:
    """``argv`` completed for running here: a default runner, and the cached Prism for Prism.

    Args:
        argv: Beam pipeline options as given on a command line.
        default_runner: the ``--runner`` to add when ``argv`` names none (None: add none).

    Returns:
        ``argv``, then ``--runner=<default_runner>`` if no runner was given, then for Prism
        ``--prism_location=<cached Prism>`` and ``--job_server_timeout`` (see the module
        docstring) unless they were given.

    Raises:
        RunnerNotInstalledError: the runner is Prism, no ``--prism_location`` is given and
            ``make runners`` has not built Prism; the message says what to run or pass.
    """
    args = list(argv)
    options = PipelineOptions(args)
    runner = options.view_as(StandardOptions).runner
    if runner is None and default_runner is not None:
        runner = default_runner
        args.append(f"--runner={default_runner}")
    if not is_prism(runner):
        return args
    if not options.view_as(PrismRunnerOptions).prism_location:
        args.append(f"--prism_location={prism_binary()}")
    if not any(a.split("=", 1)[0] in _TIMEOUT_FLAGS for a in args):
        args.append(f"--job_server_timeout={PRISM_JOB_SERVER_TIMEOUT_SECONDS}")
    return args


_TIMEOUT_FLAGS = ("--job_server_timeout", "--job-server-timeout")
