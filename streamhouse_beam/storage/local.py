"""``file:///dir``: segments in a local directory, as StreamHouse's local-storage mode keeps them.

With ``USE_LOCAL_STORAGE`` StreamHouse uses object_store's ``LocalFileSystem`` rooted at a
directory: each key goes through object_store's ``Path::from`` (split on ``/``, each part
percent-encoded, see :mod:`streamhouse_beam.storage.keys`) and every encoded part
becomes one path component, so ``org-1/data/événements/0/x.seg`` is the file
``dir/org-1/data/%C3%A9v%C3%A9nements/0/x.seg``. The segment row's bucket is ignored.

A key can never leave the root: encoding already turns ``..`` into ``%2E%2E`` and drops
leading slashes, and every path is checked again after resolving symlinks, so a symlink
inside the root that points outside it is refused with :class:`UnsafeKeyError`.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import urllib.parse

from streamhouse_beam.errors import (
    ObjectNotFoundError,
    StorageError,
    StoragePermissionError,
    StorageRootNotFoundError,
    UnsafeKeyError,
)
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.storage.keys import key_parts

__all__ = ["LocalFileStore"]


def root_from_url(url: str) -> pathlib.Path:
    """Return the directory named by a ``file://`` URL (``file:///abs`` or ``file://localhost/abs``).

    Raises:
        ValueError: the URL is not a file URL of an absolute local path.
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "file":
        raise ValueError(f"url must start with file://, got {url!r}")
    if parsed.netloc not in ("", "localhost"):
        raise ValueError(
            f"file url must be file:///absolute/dir (got host {parsed.netloc!r} in {url!r})"
        )
    path = urllib.parse.unquote(parsed.path)
    if not path or not os.path.isabs(path):
        raise ValueError(f"file url must name an absolute directory, got {url!r}")
    return pathlib.Path(path)


def _check_range(start: int, end: int) -> None:
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    if end < start:
        raise ValueError(f"end must be >= start, got start={start} end={end}")


class LocalFileStore(ObjectStore):
    """Objects as files under a root directory.

    Args:
        root: the store's root directory (need not exist until the first ``put``).
        fsync: flush each ``put`` to disk before renaming it into place. Off by default:
            the rename already makes writes atomic for readers, and tests write many files.
    """

    scheme = "file"

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = False) -> None:
        root_path = pathlib.Path(root)
        if not root_path.is_absolute():
            root_path = root_path.absolute()
        self.root = root_path
        self.fsync = bool(fsync)

    def __repr__(self) -> str:
        return f"LocalFileStore({self.url!r})"

    @property
    def url(self) -> str:
        return self.root.as_uri()

    @property
    def retry_count(self) -> int:
        """Always 0: local file operations are not retried."""
        return 0

    def stats(self) -> dict[str, int]:
        """Counters for metrics (``retries``)."""
        return {"retries": 0}

    # ----------------------------------------------------------------------------------------
    # Key -> path
    # ----------------------------------------------------------------------------------------

    def path_for(self, key: str) -> pathlib.Path:
        """Return the file that holds ``key`` (after percent-encoding), checked to stay under the root.

        Raises:
            UnsafeKeyError: the key is empty, or its path (after following symlinks) leaves the root.
        """
        return self._resolve_parts(key, key_parts(key))

    def _resolve_parts(self, key: str, parts: list[str]) -> pathlib.Path:
        root = str(self.root)
        if not parts:
            raise UnsafeKeyError(
                "key names no object (it is empty after normalisation)", key=key, bucket=root
            )
        for part in parts:
            # Encoding makes these impossible; the check stays in case encoding ever changes,
            # and for platforms where a part like "C:" would re-anchor the path.
            if (
                part in (".", "..")
                or os.sep in part
                or (os.altsep and os.altsep in part)
                or os.path.isabs(part)
                or os.path.splitdrive(part)[0]
            ):
                raise UnsafeKeyError(
                    f"key part {part!r} would escape the store root", key=key, bucket=root
                )
        candidate = self.root.joinpath(*parts)
        if os.path.commonpath([root, os.path.normpath(candidate)]) != root:
            raise UnsafeKeyError("key resolves outside the store root", key=key, bucket=root)
        real_root = os.path.realpath(root)
        real = os.path.realpath(candidate)
        if real == real_root or os.path.commonpath([real_root, real]) != real_root:
            raise UnsafeKeyError(
                "key resolves outside the store root through a symbolic link", key=key, bucket=root
            )
        return candidate

    def check_root(self, *, bucket: str | None = None) -> None:
        if not self.root.is_dir():
            raise StorageRootNotFoundError(
                f"the storage root directory {str(self.root)!r} does not exist; check the "
                f"storage url {self.url}"
            )

    def _os_error(self, exc: OSError, key: str, what: str) -> StorageError:
        root = str(self.root)
        if what != "write" and isinstance(
            exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError)
        ):
            return ObjectNotFoundError(f"object not found under {root}", key=key, bucket=None)
        if isinstance(exc, PermissionError):
            return StoragePermissionError(
                f"{what} refused by the filesystem under {root}", key=key, bucket=None
            )
        return StorageError(
            f"{what} failed under {root}: {exc.strerror or exc}", key=key, bucket=None
        )

    # ----------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        path = self.path_for(key)
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise self._os_error(exc, key, "read") from exc

    def get_range(self, key: str, start: int, end: int, *, bucket: str | None = None) -> bytes:
        _check_range(start, end)
        path = self.path_for(key)
        try:
            with open(path, "rb") as fh:
                if end == start:
                    return b""
                fh.seek(start)
                return fh.read(end - start)
        except OSError as exc:
            raise self._os_error(exc, key, "read") from exc

    def get_suffix(self, key: str, length: int, *, bucket: str | None = None) -> bytes:
        if length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        path = self.path_for(key)
        try:
            with open(path, "rb") as fh:
                total = os.fstat(fh.fileno()).st_size
                if length == 0:
                    return b""
                fh.seek(max(0, total - length))
                return fh.read(length)
        except OSError as exc:
            raise self._os_error(exc, key, "read") from exc

    def size(self, key: str, *, bucket: str | None = None) -> int:
        path = self.path_for(key)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise self._os_error(exc, key, "stat") from exc
        if not os.path.isfile(path):
            raise ObjectNotFoundError(
                f"object not found under {self.root} (a directory is there)", key=key
            )
        return st.st_size

    # ----------------------------------------------------------------------------------------
    # Writes (LocalStreamHouse and tests)
    # ----------------------------------------------------------------------------------------

    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        path = self.path_for(key)
        # '#' never survives encoding, so the temporary name cannot collide with an object
        # (object_store stages its own uploads the same way).
        tmp = path.with_name(f"{path.name}#{secrets.token_hex(6)}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # mkdir may have followed a symlinked directory: check again before writing.
            self.path_for(key)
            with open(tmp, "xb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise self._os_error(exc, key, "write") from exc

    def delete(self, key: str, *, bucket: str | None = None) -> None:
        path = self.path_for(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise self._os_error(exc, key, "delete") from exc
