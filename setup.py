"""Build hook for the optional C accelerators; all metadata lives in pyproject.toml.

``streamhouse_beam.segment._speedups`` speeds up record decoding and Arrow batch building,
``streamhouse_beam.beam._emit_speedups`` the building of records-mode output elements. Both are
optional: without a working C compiler (or Python headers) the build prints a warning
and installs the pure-Python package, which behaves identically, only slower. Set
``STREAMHOUSE_BEAM_NO_EXTENSIONS=1`` to skip the build deliberately.
"""

from __future__ import annotations

import os
import sys
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """``build_ext`` that never fails the install: a failed compile only warns."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any compiler/toolchain failure, whatever its class
            self._warn(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._warn(exc)

    @staticmethod
    def _warn(exc: BaseException) -> None:
        message = (
            f"streamhouse-beam: the optional C accelerator was not built ({exc}); "
            "the pure-Python decoder will be used instead (same results, slower)."
        )
        warnings.warn(message, stacklevel=1)
        print(message, file=sys.stderr)


ext_modules = []
if not os.environ.get("STREAMHOUSE_BEAM_NO_EXTENSIONS"):
    for name, source in (
        ("streamhouse_beam.segment._speedups", "streamhouse_beam/segment/_speedups.c"),
        ("streamhouse_beam.beam._emit_speedups", "streamhouse_beam/beam/_emit_speedups.c"),
    ):
        ext_modules.append(
            Extension(
                name,
                sources=[source],
                extra_compile_args=["-O3"] if sys.platform != "win32" else [],
                optional=True,
            )
        )

setup(ext_modules=ext_modules, cmdclass={"build_ext": OptionalBuildExt})
