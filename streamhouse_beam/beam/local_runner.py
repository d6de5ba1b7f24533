"""The runner a pipeline started from this machine uses: the cached Prism, found by itself.

Beam's ``PrismRunner`` starts a Prism binary it downloads from GitHub (and fails offline with
``Unable to fetch remote prism binary``) unless ``--prism_location`` says where one is.
``make runners`` builds Prism into the runner cache (:mod:`streamhouse_beam.runner_cache`);
:func:`local_pipeline_args` completes a command line's pipeline options with it, so
``--runner=PrismRunner`` works offline with nothing else to type. The ``streamhouse-beam``
command and the examples pass their Beam arguments through it::

    options = PipelineOptions(local_pipeline_args(beam_args, default_runner="PrismRunner"))

A ``--prism_location`` given on the command line is kept as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    PipelineOptions,
    PrismRunnerOptions,
    StandardOptions,
)

from streamhouse_beam.runner_cache import prism_binary

__all__ = ["is_prism", "local_pipeline_args", "prism_available"]

# The spellings Beam's runner lookup accepts for Prism, compared case-insensitively.
_PRISM_NAMES = frozenset({"prism", "prismrunner"})


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
        ``argv``, then ``--runner=<default_runner>`` if no runner was given, then
        ``--prism_location=<cached Prism>`` if the runner is Prism and no location was given.

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
    if is_prism(runner) and not options.view_as(PrismRunnerOptions).prism_location:
        args.append(f"--prism_location={prism_binary()}")
    return args
