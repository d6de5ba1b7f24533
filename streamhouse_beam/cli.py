"""The ``streamhouse-beam`` command: ``inspect``, ``topics`` and ``read``.

Each subcommand lives in its own ``_cli_<name>.py`` module exposing ``register(subparsers)``;
this module only dispatches. Errors from the package are printed as one line on stderr with
exit status 1 — never a traceback — because the message already says what and where.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from streamhouse_beam.errors import StreamHouseError, redact

_SUBCOMMANDS = ("inspect", "topics", "read")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamhouse-beam",
        description="Inspect StreamHouse segments and topics, and read topics with Apache Beam.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    import importlib

    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"streamhouse_beam._cli_{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra_args", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        status: int = args.func(args, extra)
    except StreamHouseError as exc:
        print(f"streamhouse-beam {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"streamhouse-beam {args.command}: {redact(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
