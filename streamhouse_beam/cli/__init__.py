"""The ``streamhouse-beam`` command: ``inspect``, ``topics`` and ``read``.

Each subcommand lives in its own internal module of this package (``_read``, ``_topics``,
``_inspect``) exposing ``register(subparsers)``; this module only dispatches. A failure is
printed as one line on stderr with exit status 1 — never a traceback — because the message
already says what and where; ``--verbose`` adds the traceback and the log lines of the
libraries underneath (Beam's among them), which are otherwise kept off the terminal. The
package's own warnings (a lost range, a start past the end) are always shown.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from streamhouse_beam.errors import StreamHouseError, redact

__all__ = ["build_parser", "main"]

_SUBCOMMANDS = ("inspect", "topics", "read")


def _version() -> str:
    from importlib import metadata

    from streamhouse_beam import __version__

    try:
        beam = f"apache-beam {metadata.version('apache-beam')}"
    except metadata.PackageNotFoundError:
        beam = "apache-beam not installed"
    python = ".".join(map(str, sys.version_info[:3]))
    return f"streamhouse-beam {__version__} ({beam}, Python {python})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamhouse-beam",
        description="Inspect StreamHouse segments and topics, and read topics with Apache Beam.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    import importlib

    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"streamhouse_beam.cli._{name}")
        module.register(sub)
        sub.choices[name].add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="show tracebacks and the log lines of the libraries underneath (Beam's)",
        )
    return parser


class _CliLogFilter(logging.Filter):
    """Lets through the package's own records; everyone else's only with ``--verbose``."""

    def __init__(self, verbose: bool) -> None:
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if self.verbose:
            return True
        ours = record.name == "streamhouse_beam" or record.name.startswith("streamhouse_beam.")
        return ours and record.levelno >= logging.WARNING


@contextmanager
def _cli_logging(command: str, verbose: bool) -> Iterator[None]:
    """Route logging to stderr for one command, and restore the previous setup afterwards.

    Installed before Beam is imported: Beam's own ``logging.basicConfig()`` calls (and the
    root-logger warnings it emits on import, such as "apitools not found") then find a handler
    and add none of their own.
    """
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"streamhouse-beam {command}: %(levelname)s %(name)s: %(message)s"
            if verbose
            else f"streamhouse-beam {command}: %(levelname)s: %(message)s"
        )
    )
    handler.addFilter(_CliLogFilter(verbose))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
    thread_hook = threading.excepthook
    if not verbose:
        threading.excepthook = _thread_failure_to_log
    try:
        yield
    finally:
        threading.excepthook = thread_hook
        root.removeHandler(handler)
        root.setLevel(level)
        if not verbose:
            # Registered after Beam's own exit hooks (a Prism job server registers one when it
            # starts), so it runs before them: their log lines ("Really destroying service")
            # and the logging.basicConfig() they call then find a handler that drops them.
            atexit.register(_quiet_exit)


def _thread_failure_to_log(args: threading.ExceptHookArgs) -> None:
    """Beam's threads as the log (shown with ``--verbose``), not as tracebacks on stderr.

    On an interrupt Beam's SIGINT handler stops a Prism job server before the main thread
    sees the KeyboardInterrupt, and the runner's gRPC threads in this process (the LOOPBACK
    worker, the job's message stream) fail as it goes. A failure that matters reaches the
    main thread as the pipeline's error.
    """
    name = args.thread.name if args.thread is not None else "?"
    logging.getLogger("streamhouse_beam.cli.threads").debug(
        "thread %s ended with %s: %s", name, args.exc_type.__name__, args.exc_value
    )


def _quiet_exit() -> None:
    logging.getLogger().addHandler(logging.NullHandler())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    verbose = bool(getattr(args, "verbose", False))
    with _cli_logging(args.command, verbose):
        try:
            status: int = args.func(args, extra)
        except KeyboardInterrupt:
            if not verbose:
                # The interrupt ends a tailing read. Threads of the runner that fail after it
                # (as Prism's job server stops) print tracebacks that say nothing about the
                # read, even during interpreter shutdown: nothing more is said on stderr.
                sys.stderr.flush()
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stderr.fileno())
            return 130
        except BrokenPipeError:
            # The reader of our standard output went away (| head): nothing more to say, and
            # the interpreter must not fail again flushing stdout at exit.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 1
        except Exception as exc:
            if verbose:
                traceback.print_exc(file=sys.stderr)
            print(f"streamhouse-beam {args.command}: {_one_line(exc, verbose)}", file=sys.stderr)
            return 1
    return status


def _one_line(exc: BaseException, verbose: bool) -> str:
    """The error as one line: the project's errors by name, others with a pointer to -v."""
    if isinstance(exc, StreamHouseError):
        return f"{type(exc).__name__}: {exc}"
    text = redact(str(exc)).strip()
    if isinstance(exc, (OSError, ValueError)):
        return text.replace("\n", " ")
    first = text.splitlines()[0] if text else ""
    hint = "" if verbose else " (--verbose shows the traceback)"
    return f"{type(exc).__name__}: {first}{hint}"
