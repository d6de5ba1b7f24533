"""The public names are a deliberate list: changing the face means changing this test.

``streamhouse_beam`` is what pipeline authors import; ``streamhouse_beam.beam`` is its Beam
half, re-exported there. Everything else is internal.
"""

from __future__ import annotations

import importlib.metadata
import pathlib
import subprocess
import sys
import types

import pytest

import streamhouse_beam
import streamhouse_beam.beam
from streamhouse_beam import errors

BEAM_NAMES = [
    "DeadLetterRecord",
    "EventTimePolicy",
    "PartitionDescriptor",
    "ReadAllFromStreamHouse",
    "ReadFromStreamHouse",
    "StreamHouseRow",
    "StreamHouseTextRow",
    "local_pipeline_args",
]

PUBLIC_NAMES = sorted(
    [
        *BEAM_NAMES,
        "AvroDecoder",
        "CorruptSegmentError",
        "DataLossError",
        "DecodeError",
        "EventTimeError",
        "MetadataError",
        "MetadataUnavailableError",
        "MissingExtraError",
        "NoCommittedOffsetError",
        "NotAStreamHouseStoreError",
        "ObjectNotFoundError",
        "OrganizationError",
        "SchemaRegistryError",
        "SchemaRegistryDecoder",
        "SegmentError",
        "StartPosition",
        "StopPosition",
        "StorageError",
        "StoragePermissionError",
        "StorageRootNotFoundError",
        "StreamHouseError",
        "StreamHouseRecord",
        "TopicNotFoundError",
        "TopicPartition",
        "TransientStorageError",
        "UnsupportedOnRunnerError",
        "ValueDecoder",
        "__version__",
    ]
)


def test_the_package_exports_exactly_the_curated_names() -> None:
    assert sorted(streamhouse_beam.__all__) == PUBLIC_NAMES
    assert len(set(streamhouse_beam.__all__)) == len(streamhouse_beam.__all__)


def test_the_beam_package_exports_exactly_its_half_of_the_face() -> None:
    assert sorted(streamhouse_beam.beam.__all__) == BEAM_NAMES
    for name in BEAM_NAMES:
        assert getattr(streamhouse_beam, name) is getattr(streamhouse_beam.beam, name)


def test_every_public_name_resolves_and_a_star_import_gives_exactly_them() -> None:
    namespace: dict[str, object] = {}
    exec("from streamhouse_beam import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == PUBLIC_NAMES
    assert "StreamHouseTextRow" in dir(streamhouse_beam)


def test_no_other_public_name_sits_in_the_package_namespace() -> None:
    # A star import (the way redact and the metadata rows once leaked in) would show here.
    # Submodules and the __future__ feature are attributes of any package that has them.
    stray = {
        name
        for name, value in vars(streamhouse_beam).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)
        and name != "annotations"
    } - set(PUBLIC_NAMES)
    assert stray == set()
    assert not hasattr(streamhouse_beam, "redact")
    assert not hasattr(streamhouse_beam, "SegmentInfo")


def test_every_public_error_is_part_of_the_tree() -> None:
    for name in PUBLIC_NAMES:
        value = getattr(streamhouse_beam, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, streamhouse_beam.StreamHouseError)
            assert name in errors.__all__


def test_version_is_the_installed_distribution_s() -> None:
    try:
        installed = importlib.metadata.version("streamhouse-beam")
    except importlib.metadata.PackageNotFoundError:
        installed = "0+unknown"
    assert streamhouse_beam.__version__ == installed


def test_version_says_unknown_when_the_package_is_not_installed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert streamhouse_beam._installed_version() == "0+unknown"


def test_importing_the_package_does_not_import_apache_beam() -> None:
    # The CLI's topics and inspect commands and Beam-free users pay nothing for Beam.
    code = "import sys, streamhouse_beam; print('apache_beam' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"


def test_the_watermark_estimator_is_not_exported() -> None:
    # Its observe_timestamp ignores outputs (tests/test_watermark_contract.py): only the read's
    # own provider makes one.
    from streamhouse_beam.beam import _watermark as watermark

    for module in (streamhouse_beam, streamhouse_beam.beam, watermark):
        assert "PartitionWatermarkEstimator" not in getattr(module, "__all__", ())
        assert not hasattr(module, "PartitionWatermarkEstimator")
    made = watermark.PartitionWatermarkEstimatorProvider().create_watermark_estimator(None)
    assert type(made) is watermark._PartitionWatermarkEstimator


#: The unprefixed modules: the faces, then the Beam-free layers (the package docstring says
#: which is which). Every other module's name starts with "_".
UNPREFIXED_MODULES = {
    "streamhouse_beam",
    "streamhouse_beam.beam",
    "streamhouse_beam.beam.yaml_provider",
    "streamhouse_beam.cli",
    "streamhouse_beam.errors",
    "streamhouse_beam.testing",
    "streamhouse_beam.cache",
    "streamhouse_beam.decoders",
    "streamhouse_beam.metadata",
    "streamhouse_beam.partition_reader",
    "streamhouse_beam.positions",
    "streamhouse_beam.records",
    "streamhouse_beam.segment",
    "streamhouse_beam.settings",
    "streamhouse_beam.storage",
}

#: Packages whose unprefixed modules are theirs to show: a layer's backends and codec parts,
#: the test helpers.
OPEN_PACKAGES = (
    "streamhouse_beam.metadata.",
    "streamhouse_beam.segment.",
    "streamhouse_beam.storage.",
    "streamhouse_beam.testing.",
)


def _modules() -> list[str]:
    root = pathlib.Path(streamhouse_beam.__file__).parent
    found = []
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(".".join(parts))
    return sorted(found)


def test_every_module_is_a_face_a_layer_or_underscored() -> None:
    modules = _modules()
    assert set(UNPREFIXED_MODULES) <= set(modules)
    # Dunder modules (cli/__main__.py) start with "_" too: `python -m` runs them.
    named_plainly = {name for name in modules if not name.rsplit(".", 1)[-1].startswith("_")}
    strays = {
        name for name in named_plainly - UNPREFIXED_MODULES if not name.startswith(OPEN_PACKAGES)
    }
    assert strays == set(), "an internal module without a '_' prefix (or a new face: list it)"
    # The Beam machinery in particular: only the face and the YAML provider are unprefixed.
    beam = {name for name in named_plainly if name.startswith("streamhouse_beam.beam")}
    assert beam == {"streamhouse_beam.beam", "streamhouse_beam.beam.yaml_provider"}


def test_every_unprefixed_module_lists_its_names() -> None:
    import importlib

    for name in sorted(UNPREFIXED_MODULES):
        module = importlib.import_module(name)
        assert isinstance(getattr(module, "__all__", None), list | tuple), name
        for exported in module.__all__:
            assert hasattr(module, exported), f"{name}.__all__ names missing {exported}"
