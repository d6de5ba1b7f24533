"""Object stores over StreamHouse's key layout, chosen by URL scheme.

:func:`open_store` turns a ``storage_url`` into an :class:`ObjectStore`:

==================  ==========================================================================
``file:///dir``     :class:`~streamhouse_beam.storage.local.LocalFileStore` (StreamHouse's
                    local-storage mode; the segment row's bucket is ignored)
``s3://bucket``     :class:`~streamhouse_beam.storage.s3.S3Store` (boto3; ``s3://`` alone uses
                    the bucket of each segment row); AWS_* settings as usual
``gs://bucket``     :class:`~streamhouse_beam.storage.gcs.GcsStore` (google-cloud-storage;
                    ``STORAGE_EMULATOR_HOST`` honoured)
``memory://name``   :class:`~streamhouse_beam.storage.memory.MemoryStore`, in-process, for tests
                    (``memory://`` alone uses the bucket of each segment row)
==================  ==========================================================================

A URL means what it says: a bucket it names is the bucket read, whatever the segment rows
recorded (a replica, a renamed bucket); only a bucket-less URL reads each row's bucket.

Backends are imported lazily, so boto3 and google-cloud-storage are only needed when used
(a store built without its SDK raises :class:`~streamhouse_beam.errors.MissingExtraError`).
Every backend percent-encodes keys exactly as StreamHouse does (:func:`encode_key`: split on ``/``, empty parts dropped, each part percent-encoded).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from streamhouse_beam.errors import redact
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.storage.keys import encode_key

__all__ = ["SCHEMES", "ObjectStore", "encode_key", "open_store"]

#: URL schemes :func:`open_store` understands.
SCHEMES = ("file", "s3", "gs", "memory")


def _reject_unknown(options: Mapping[str, Any], allowed: frozenset[str], scheme: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"storage_options {unknown} are not understood by {scheme}:// stores "
            f"(accepted: {sorted(allowed)})"
        )


def open_store(url: str, options: Mapping[str, Any] | None = None) -> ObjectStore:
    """Open the object store a ``storage_url`` names.

    Args:
        url: ``file:///dir``, ``s3://bucket`` (or ``s3://``), ``gs://bucket`` or ``memory://name``.
        options: backend settings (``storage_options``); unknown names raise ``ValueError``.
            S3: ``endpoint_url``, ``region_name``, ``aws_access_key_id``,
            ``aws_secret_access_key``, ``aws_session_token``, ``addressing_style``
            (``"path"``/``"virtual"``), ``max_attempts``, ``connect_timeout``, ``read_timeout``.
            GCS: ``project``, ``anonymous``, ``endpoint``, ``timeout``. File: ``fsync``.
            S3 and GCS: ``retry_attempts``, ``retry_base_delay``, ``retry_max_delay``.

    Returns:
        A picklable store; network clients are created on first use.

    Raises:
        ValueError: the URL's scheme is unknown, the URL is malformed, or an option is unknown.
    """
    if not isinstance(url, str):
        raise TypeError(f"storage url must be a str, got {type(url).__name__}")
    opts = dict(options or {})
    parsed = urllib.parse.urlsplit(url)
    scheme = parsed.scheme.lower()
    if parsed.username is not None or parsed.password is not None:
        raise ValueError(
            f"storage url {redact(url)!r} must not carry credentials; pass them as "
            "storage_options or standard environment settings"
        )
    if parsed.query or parsed.fragment:
        raise ValueError(f"storage url {redact(url)!r} must not have a query or fragment")

    if scheme == "file":
        from streamhouse_beam.storage.local import LocalFileStore, root_from_url

        _reject_unknown(opts, frozenset({"fsync"}), scheme)
        return LocalFileStore(root_from_url(url), fsync=bool(opts.get("fsync", False)))

    if scheme == "memory":
        from streamhouse_beam.storage.memory import MemoryStore

        _reject_unknown(opts, frozenset(), scheme)
        if parsed.path not in ("", "/"):
            raise ValueError(f"memory url must be memory://name, got {url!r}")
        return MemoryStore(parsed.netloc)

    if scheme == "s3":
        from streamhouse_beam.storage.s3 import S3_OPTIONS, S3Store

        _reject_unknown(opts, S3_OPTIONS, scheme)
        if parsed.path not in ("", "/"):
            raise ValueError(
                f"s3 url must be s3://bucket or s3:// (keys carry the whole path), got {redact(url)!r}"
            )
        return S3Store(parsed.netloc, **opts)

    if scheme == "gs":
        from streamhouse_beam.storage.gcs import GCS_OPTIONS, GcsStore

        _reject_unknown(opts, GCS_OPTIONS, scheme)
        if parsed.path not in ("", "/"):
            raise ValueError(
                f"gs url must be gs://bucket or gs:// (keys carry the whole path), got {redact(url)!r}"
            )
        return GcsStore(parsed.netloc, **opts)

    raise ValueError(
        f"storage url {redact(url)!r} has unsupported scheme {parsed.scheme!r}; "
        f"use one of {', '.join(s + '://' for s in SCHEMES)}"
    )
