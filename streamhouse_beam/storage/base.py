"""The object-store interface every backend implements.

Keys given to a store are the raw ``segments.s3_key`` strings from the metadata store; each
backend turns them into real object names with :func:`streamhouse_beam.storage.keys.encode_key`
(the per-part percent-encoding StreamHouse's object_store layer applies) itself, so callers never encode.
"""

from __future__ import annotations

import abc
from typing import Any


class ObjectStore(abc.ABC):
    """Read (and, for the testing helpers, write) segment objects.

    Implementations must be picklable: clients are created lazily on first use and dropped in
    ``__getstate__``. ``bucket`` is the segment row's bucket (StreamHouse records one per
    row): a store whose URL names a bucket reads that bucket whatever the row says (a replica,
    a renamed bucket), a bucket-less URL (``s3://``, ``gs://``) reads the row's, and backends
    without buckets ignore it.
    """

    #: URL scheme this backend serves ("file", "s3", "gs", "memory").
    scheme: str = ""

    @property
    @abc.abstractmethod
    def url(self) -> str:
        """The store's URL with any credentials removed (safe to log and display)."""

    @abc.abstractmethod
    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        """Return the whole object. Raises ObjectNotFoundError, StoragePermissionError, ..."""

    @abc.abstractmethod
    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        """Return bytes ``[start, end)`` of the object (fewer if the object is shorter)."""

    @abc.abstractmethod
    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        """Return the last ``length`` bytes of the object (all of it if shorter)."""

    @abc.abstractmethod
    def size(self, key: str, *, bucket: str | None = None) -> int:
        """Return the object's size in bytes."""

    @abc.abstractmethod
    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        """Write the whole object (used by LocalStreamHouse and tests, never by the reader)."""

    @abc.abstractmethod
    def delete(self, key: str, *, bucket: str | None = None) -> None:
        """Delete the object; deleting a missing object is not an error."""

    def exists(self, key: str, *, bucket: str | None = None) -> bool:
        from streamhouse_beam.errors import ObjectNotFoundError

        try:
            self.size(key, bucket=bucket)
        except ObjectNotFoundError:
            return False
        return True

    def check_root(self, *, bucket: str | None = None) -> None:  # noqa: B027 - optional hook
        """Raise if the directory or bucket the store reads from does not exist.

        The read path asks this when an object is missing, to tell a configuration error (a
        mistyped storage url, a bucket never created) from a deleted segment. A store that
        cannot tell (no permission to look, a transient failure) returns without raising.

        Args:
            bucket: the segment row's bucket, as for the reads.

        Raises:
            StorageRootNotFoundError: the root directory or the bucket does not exist.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections; the store stays usable (they are re-created)."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
