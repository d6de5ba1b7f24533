"""Finding the optional C accelerators, and the switch that turns them all off.

The extensions (``streamhouse_beam.segment._speedups``, ``streamhouse_beam.beam._emit_speedups``) are
built only where a C compiler works; every function they provide has a pure-Python twin with
the same results and errors. Setting ``STREAMHOUSE_BEAM_PURE_PYTHON`` to a non-empty value
makes every module use the twins, which is how the fallback is tested on a machine that has
the extensions.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__all__ = ["PURE_PYTHON_ENV", "accelerator"]

#: Environment variable forcing the pure-Python implementations.
PURE_PYTHON_ENV = "STREAMHOUSE_BEAM_PURE_PYTHON"


def accelerator(module: str, name: str) -> Any:
    """``name`` from the extension ``module``, or None when it is not built or turned off.

    A stale build that predates ``name`` also gives None, so callers fall back per function.
    """
    if os.environ.get(PURE_PYTHON_ENV):
        return None
    try:
        extension = importlib.import_module(module)
    except ImportError:
        return None
    return getattr(extension, name, None)
