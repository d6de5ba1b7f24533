"""What the network object stores (``s3://``, ``gs://``) have in common.

:class:`CloudStore` holds the URL's default bucket, the retry budget with its per-instance
counter, and the parts of every call that do not depend on the SDK: choosing the bucket (the
URL's, else the segment row's: see :meth:`CloudStore._target`) and percent-encoding the key as StreamHouse does, checking range
arguments, answering zero-length reads with a size check, keeping the right bytes when a
server ignores a Range header, treating a delete of a missing object as done, and running
each call under the retry budget with its SDK errors mapped (:meth:`CloudStore._call`). A
backend supplies the SDK calls: one ranged GET (:meth:`CloudStore._fetch_range`), one suffix GET
(:meth:`CloudStore._fetch_suffix`) and a delete, each made through :meth:`CloudStore._call`, and
the mapping of its SDK's exceptions (:meth:`CloudStore._map_error`).
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from streamhouse_beam._retry import (
    STORAGE_RETRY,
    RetryCounter,
    RetryPolicy,
    call_with_retry,
    storage_give_up,
)
from streamhouse_beam.errors import (
    MissingExtraError,
    ObjectNotFoundError,
    StorageError,
    StorageRootNotFoundError,
    UnsafeKeyError,
)
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.storage.keys import encode_key

__all__ = ["RETRY_OPTIONS", "CloudStore", "InvalidRange", "import_sdk"]

T = TypeVar("T")

#: storage_options every network store accepts: its retry budget.
RETRY_OPTIONS = frozenset({"retry_attempts", "retry_base_delay", "retry_max_delay"})


def import_sdk(module: str, *, scheme: str, extra: str, package: str) -> Any:
    """Import a backend's SDK ``module``, or say which extra installs it.

    Called when a store is built (on the launcher, when the transform is), so a missing SDK is
    one line naming ``pip install 'streamhouse-beam[extra]'`` instead of a worker traceback.

    Raises:
        MissingExtraError: ``module`` cannot be imported.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{scheme}:// storage urls", extra, module=package) from exc


class InvalidRange(Exception):
    """The requested range starts at or past the end of the object (HTTP 416)."""


class CloudStore(ObjectStore):
    """Base of the network stores: bucket targeting, retry budget and range semantics.

    Args:
        bucket: the URL's bucket: every call reads it, whatever the segment row says; ``""``
            (``s3://``, ``gs://``) reads each row's bucket.
        retry_attempts: attempts per operation for transient failures (default 6).
        retry_base_delay: first backoff ceiling in seconds (default 0.1), doubling per retry.
        retry_max_delay: cap on one backoff sleep in seconds (default 5).
    """

    def __init__(
        self,
        bucket: str,
        *,
        retry_attempts: int | None,
        retry_base_delay: float | None,
        retry_max_delay: float | None,
    ) -> None:
        if "/" in bucket:
            raise ValueError(f"bucket must not contain '/', got {bucket!r}")
        self.bucket = bucket
        retry_options = {
            name: value
            for name, value in (
                ("retry_attempts", retry_attempts),
                ("retry_base_delay", retry_base_delay),
                ("retry_max_delay", retry_max_delay),
            )
            if value is not None
        }
        self.retry_policy = RetryPolicy.from_options(retry_options, STORAGE_RETRY)
        self._retries = RetryCounter()

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.bucket}"

    @property
    def retry_count(self) -> int:
        """Retries this store instance has made (transient failures that were retried)."""
        return self._retries.value

    def stats(self) -> dict[str, int]:
        """Counters for metrics (``retries``)."""
        return {"retries": self._retries.value}

    # ----------------------------------------------------------------------------------------
    # What a backend provides
    # ----------------------------------------------------------------------------------------

    @abc.abstractmethod
    def _fetch_range(
        self, key: str, bucket: str | None, start: int, end: int
    ) -> tuple[bytes, bool]:
        """GET bytes ``[start, end)`` (``end > start``) with retries.

        Returns:
            The bytes, and whether the server ignored the range and sent the whole object.

        Raises:
            InvalidRange: the range starts at or past the end of the object.
        """

    @abc.abstractmethod
    def _fetch_suffix(self, key: str, bucket: str | None, length: int) -> bytes:
        """GET the last ``length`` (> 0) bytes with retries; a server may send more.

        Raises:
            InvalidRange: the object is empty and the server refuses the suffix.
        """

    @abc.abstractmethod
    def _delete(self, key: str, bucket: str | None) -> None:
        """DELETE the object with retries; :class:`ObjectNotFoundError` when it is missing."""

    @abc.abstractmethod
    def _map_error(self, exc: Exception, *, key: str, bucket: str, what: str) -> Exception | None:
        """The error to raise ``from exc`` for an exception one SDK call raised.

        Returns:
            A project error, a :class:`RetryableFailure` to retry, :class:`InvalidRange`, or
            ``None`` to let ``exc`` through unchanged (it is not the SDK's, or not known).
        """

    # ----------------------------------------------------------------------------------------
    # Shared call plumbing
    # ----------------------------------------------------------------------------------------

    def _target(self, key: str, bucket: str | None) -> tuple[str, str]:
        """The bucket to call and the encoded object name.

        The URL's bucket when it names one, so ``s3://replica`` reads the replica (or a renamed
        bucket) whatever the rows recorded; the row's bucket only for a bucket-less URL. StreamHouse's
        own readers ignore the row's bucket too: they read the bucket they are configured with.
        """
        target = self._bucket_for(bucket)
        if not target:
            raise StorageError(
                "no bucket to read from: the segment row's bucket is empty and the store url "
                f"is {self.scheme}:// without one; use {self.scheme}://BUCKET",
                key=key,
            )
        name = encode_key(key)
        if not name:
            raise UnsafeKeyError(
                "key names no object (it is empty after normalisation)", key=key, bucket=target
            )
        return target, name

    def _bucket_for(self, row_bucket: str | None) -> str:
        return self.bucket or row_bucket or ""

    @abc.abstractmethod
    def _bucket_exists(self, bucket: str) -> bool | None:
        """Whether ``bucket`` exists; ``None`` when the store cannot tell (refused, failed)."""

    def check_root(self, *, bucket: str | None = None) -> None:
        target = self._bucket_for(bucket)
        if target and self._bucket_exists(target) is False:
            raise StorageRootNotFoundError(
                f"the bucket does not exist; check the storage url ({self.url}) and, for a "
                f"bucket-less {self.scheme}:// url, the segment rows' bucket",
                bucket=target,
            )

    def _call(self, what: str, key: str, bucket: str | None, attempt: Callable[[str, str], T]) -> T:
        """Run ``attempt(bucket, object name)`` under this store's retry budget.

        The bucket and name come from :meth:`_target`; each attempt's SDK exceptions are
        mapped by :meth:`_map_error`.
        """
        target, name = self._target(key, bucket)

        def one_attempt() -> T:
            try:
                return attempt(target, name)
            except Exception as exc:
                mapped = self._map_error(exc, key=key, bucket=target, what=what)
                if mapped is None:
                    raise
                raise mapped from exc

        return call_with_retry(
            one_attempt,
            self.retry_policy,
            give_up=storage_give_up(what, key=key, bucket=target),
            counter=self._retries,
        )

    # ----------------------------------------------------------------------------------------
    # ObjectStore reads and deletes
    # ----------------------------------------------------------------------------------------

    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        if end < start:
            raise ValueError(f"end must be >= start, got start={start} end={end}")
        if end == start:
            self.size(
                key, bucket=bucket
            )  # HTTP cannot ask for zero bytes; still report a missing object
            return b""
        try:
            data, whole = self._fetch_range(key, bucket, start, end)
        except InvalidRange:
            return b""  # the range starts at or past the end of an existing object
        # A server that ignores Range sends the whole object.
        return data[start:end] if whole else data

    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        if length == 0:
            self.size(key, bucket=bucket)
            return b""
        try:
            data = self._fetch_suffix(key, bucket, length)
        except InvalidRange:
            return b""  # a suffix of an empty object
        # A server that ignores Range (or a short object) sends everything: keep the tail.
        return data[-length:] if len(data) > length else data

    def delete(self, key: str, *, bucket: str | None = None) -> None:
        try:
            self._delete(key, bucket)
        except ObjectNotFoundError:
            return
