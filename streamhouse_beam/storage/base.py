"""The object-store interface every backend implements.

Keys given to a store are the raw ``segments.s3_key`` strings from the metadata store; each
backend turns them into real object names with :func:`streamhouse_beam.storage.keys.encode_key`
(StreamHouse's object_store percent-encoding, spec §2.6) itself, so callers never encode.
"""

from __future__ import annotations

import abc
from typing import Any


class ObjectStore(abc.ABC):
    """Read (and, for the testing helpers, write) segment objects.

    Implementations must be picklable: clients are created lazily on first use and dropped in
    ``__getstate__``. ``bucket`` overrides the store's own bucket for one call (StreamHouse
    records a bucket per segment row); backends without buckets ignore it.
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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release clients and connections; the store stays usable (they are re-created)."""

    def __enter__(self) -> ObjectStore:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
