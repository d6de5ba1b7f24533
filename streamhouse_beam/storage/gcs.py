"""``gs://bucket``: segments in Google Cloud Storage, via google-cloud-storage.

StreamHouse reaches GCS through object_store as well, so object names are the keys percent-encoded
as :mod:`streamhouse_beam.storage.keys` does. The URL's bucket is read whatever the segment
rows say (StreamHouse's own readers ignore the rows' bucket too); only a bucket-less ``gs://``
reads each row's bucket.
Credentials come from Application Default Credentials; with ``STORAGE_EMULATOR_HOST`` set
(gcp-storage-emulator, fake-gcs-server) the client talks to the emulator anonymously.

The library's own retries are switched off per call (``retry=None``) so that this store's
budget, with its counter and its key-naming error, is the only one. Suffix reads send one
``Range: bytes=-n`` request; a server that ignores suffix ranges (the emulator) answers with
the whole object, whose tail is then kept, so the result is right either way.
"""

from __future__ import annotations

import http.client
import threading
from typing import Any

from streamhouse_beam._retry import RetryableFailure
from streamhouse_beam.errors import ObjectNotFoundError, StorageError, StoragePermissionError
from streamhouse_beam.storage._cloud import RETRY_OPTIONS, CloudStore, InvalidRange, import_sdk

__all__ = ["GCS_OPTIONS", "GcsStore", "map_google_error"]

#: storage_options a ``gs://`` store accepts.
GCS_OPTIONS = RETRY_OPTIONS | {
    "project",
    "anonymous",
    "endpoint",
    "credentials_file",
    "timeout",
}

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def map_google_error(
    exc: BaseException, *, key: str, bucket: str, what: str
) -> StorageError | RetryableFailure | InvalidRange | None:
    """Translate an exception from google-cloud-storage into the project's error for ``key``.

    Returns:
        The error to raise ``from exc`` (or a :class:`RetryableFailure` to retry), or ``None``
        when ``exc`` is not something this backend knows how to classify.
    """
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    if isinstance(exc, api.GoogleAPICallError):
        status = int(exc.code) if exc.code is not None else None
        detail = _short(str(exc.message))
        if status:
            detail = f"HTTP {status}: {detail}"
        if status == 416:
            return InvalidRange()
        if status == 404:
            return ObjectNotFoundError(
                f"{what}: object (or its bucket) not found", key=key, bucket=bucket
            )
        if status in (401, 403):
            return StoragePermissionError(
                f"{what} refused: {detail}; check the Google credentials and the bucket's IAM",
                key=key,
                bucket=bucket,
            )
        if status in _TRANSIENT_STATUS:
            return RetryableFailure(detail)
        return StorageError(f"{what} failed: {detail}", key=key, bucket=bucket)
    if isinstance(exc, (auth.DefaultCredentialsError, auth.RefreshError)):
        return StoragePermissionError(
            f"{what}: no usable Google credentials ({type(exc).__name__}); set "
            "GOOGLE_APPLICATION_CREDENTIALS, pass credentials_file, or anonymous=True",
            key=key,
            bucket=bucket,
        )
    if isinstance(exc, auth.TransportError):
        return RetryableFailure(f"{type(exc).__name__}: {exc}")
    if _is_transport_failure(exc):
        return RetryableFailure(f"{type(exc).__name__}: {exc}")
    return None


def _short(text: str, limit: int = 240) -> str:
    """The first line of a server message, cut to ``limit`` characters."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _is_transport_failure(exc: BaseException) -> bool:
    """Connection resets, timeouts, truncated or corrupt bodies: worth another attempt."""
    import requests
    import urllib3.exceptions
    from google.cloud.storage.exceptions import DataCorruption

    transient: tuple[type[BaseException], ...] = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
        http.client.IncompleteRead,
        DataCorruption,
        ConnectionError,
        TimeoutError,
    )
    try:
        from google.resumable_media import DataCorruption as LegacyDataCorruption

        transient += (LegacyDataCorruption,)
    except ImportError:
        pass
    return isinstance(exc, transient)


def _import_storage() -> Any:
    return import_sdk(
        "google.cloud.storage", scheme="gs", extra="gcs", package="google-cloud-storage"
    )


class GcsStore(CloudStore):
    """Objects in GCS buckets, read with google-cloud-storage.

    Args:
        bucket: the URL's bucket, read by every call; ``""`` (``gs://``) reads each segment
            row's bucket.
        project: GCP project for the client (not needed for object reads).
        anonymous: use anonymous credentials (public buckets, emulators). Automatic when
            ``STORAGE_EMULATOR_HOST`` is set.
        endpoint: API endpoint, e.g. an emulator's ``http://127.0.0.1:4443``.
        credentials_file: a service-account JSON key file instead of ADC.
        timeout: seconds per HTTP request (default 60).
        retry_attempts: attempts per operation for transient failures (default 6).
        retry_base_delay: first backoff ceiling in seconds (default 0.1), doubling per retry.
        retry_max_delay: cap on one backoff sleep in seconds (default 5).
    """

    scheme = "gs"

    def __init__(
        self,
        bucket: str = "",
        *,
        project: str | None = None,
        anonymous: bool = False,
        endpoint: str | None = None,
        credentials_file: str | None = None,
        timeout: float | None = None,
        retry_attempts: int | None = None,
        retry_base_delay: float | None = None,
        retry_max_delay: float | None = None,
    ) -> None:
        _import_storage()
        super().__init__(
            bucket,
            retry_attempts=retry_attempts,
            retry_base_delay=retry_base_delay,
            retry_max_delay=retry_max_delay,
        )
        if timeout is not None and float(timeout) <= 0:
            raise ValueError(f"timeout must be > 0, got {timeout!r}")
        if anonymous and credentials_file:
            raise ValueError("anonymous and credentials_file are mutually exclusive")
        self.project = project or None
        self.anonymous = bool(anonymous)
        self.endpoint = endpoint or None
        self.credentials_file = credentials_file or None
        self.timeout = float(timeout) if timeout is not None else 60.0
        self._init_clients()

    def _init_clients(self) -> None:
        # The library does not promise that one Client is safe across threads: one per thread.
        self._local = threading.local()
        self._clients_lock = threading.Lock()
        self._clients: list[Any] = []

    def __repr__(self) -> str:
        endpoint = f", endpoint={self.endpoint!r}" if self.endpoint else ""
        return f"GcsStore({self.url!r}{endpoint})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for name in ("_local", "_clients_lock", "_clients"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_clients()

    def close(self) -> None:
        with self._clients_lock:
            clients, self._clients = self._clients, []
            self._local = threading.local()
        for client in clients:
            client.close()

    def client(self) -> Any:
        """This thread's google-cloud-storage Client, created on first use."""
        client = getattr(self._local, "client", None)
        if client is not None:
            return client
        storage = _import_storage()
        kwargs: dict[str, Any] = {"project": self.project}
        if self.endpoint:
            kwargs["client_options"] = {"api_endpoint": self.endpoint}
        if self.anonymous:
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()  # type: ignore[no-untyped-call]
        elif self.credentials_file:
            from google.oauth2 import service_account

            from_file = service_account.Credentials.from_service_account_file
            kwargs["credentials"] = from_file(self.credentials_file)  # type: ignore[no-untyped-call]
        client = storage.Client(**kwargs)
        if getattr(client, "_bucket_metadata_cache", None) is not None:
            # google-cloud-storage >= 3.x fetches each bucket's metadata in a background thread
            # on first use, only to label tracing spans. That is an extra request per bucket
            # that needs storage.buckets.get (read-only accounts lack it) and races with ours;
            # the library checks this attribute for truthiness before every such fetch.
            client._bucket_metadata_cache = None
        with self._clients_lock:
            self._clients.append(client)
        self._local.client = client
        return client

    # ----------------------------------------------------------------------------------------
    # Calls
    # ----------------------------------------------------------------------------------------

    def _blob(self, target: str, name: str) -> Any:
        return self.client().bucket(target).blob(name)

    def _map_error(self, exc: Exception, *, key: str, bucket: str, what: str) -> Exception | None:
        return map_google_error(exc, key=key, bucket=bucket, what=what)

    def _download(self, key: str, bucket: str | None, start: int | None, end: int | None) -> bytes:
        def attempt(target: str, name: str) -> bytes:
            data: bytes = self._blob(target, name).download_as_bytes(
                start=start,
                end=end,
                raw_download=True,  # the stored bytes, never a decompressed transcoding
                timeout=self.timeout,
                retry=None,
            )
            return data

        return self._call("GCS GET", key, bucket, attempt)

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        return self._download(key, bucket, None, None)

    def _fetch_range(
        self, key: str, bucket: str | None, start: int, end: int
    ) -> tuple[bytes, bool]:
        data = self._download(key, bucket, start, end - 1)  # GCS's end is inclusive
        # A range-honouring server never sends more than asked: more means it ignored the
        # Range header and sent the whole object.
        return data, len(data) > end - start

    def _fetch_suffix(self, key: str, bucket: str | None, length: int) -> bytes:
        return self._download(key, bucket, -length, None)

    def size(self, key: str, *, bucket: str | None = None) -> int:
        def attempt(target: str, name: str) -> int:
            blob = self.client().bucket(target).get_blob(name, timeout=self.timeout, retry=None)
            if blob is None:
                raise ObjectNotFoundError("GCS HEAD: object not found", key=key, bucket=target)
            return int(blob.size)

        return self._call("GCS HEAD", key, bucket, attempt)

    def _bucket_exists(self, bucket: str) -> bool | None:
        try:
            exists: bool = self.client().bucket(bucket).exists(timeout=self.timeout, retry=None)
        except Exception:  # refused (storage.buckets.get) or failed: cannot tell
            return None
        return exists

    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        payload = bytes(data)

        def attempt(target: str, name: str) -> None:
            self._blob(target, name).upload_from_string(
                payload,
                content_type="application/octet-stream",
                timeout=self.timeout,
                retry=None,
            )

        self._call("GCS PUT", key, bucket, attempt)

    def _delete(self, key: str, bucket: str | None) -> None:
        def attempt(target: str, name: str) -> None:
            self._blob(target, name).delete(timeout=self.timeout, retry=None)

        self._call("GCS DELETE", key, bucket, attempt)
