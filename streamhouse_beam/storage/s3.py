"""``s3://bucket`` (or ``s3://``): segments in Amazon S3 or an S3-compatible store, via boto3.

The bucket of each call is the URL's bucket; only a bucket-less ``s3://`` reads the segment
row's ``s3_bucket`` (so ``s3://replica`` reads a replica or a renamed bucket whatever the rows
recorded; StreamHouse's own readers ignore the row's bucket too). Endpoint, region and credentials follow the standard AWS settings
(``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``,
profiles, instance roles, ...), so MinIO or moto work by environment alone. StreamHouse's
own ``S3_ENDPOINT`` variable is used as the endpoint when no AWS endpoint setting is present.

Keys are percent-encoded as StreamHouse's object_store layer does (per ``/``-separated part) before any request.
Throttling, 5xx answers, timeouts, resets and truncated bodies are retried with exponential
backoff and jitter under this store's own budget; botocore's retries are off by default, so
that budget is the one bound on how long a call can take (see :data:`_BOTO_MAX_ATTEMPTS`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from streamhouse_beam._retry import RetryableFailure
from streamhouse_beam.errors import (
    ObjectNotFoundError,
    StorageError,
    StoragePermissionError,
    StorageRootNotFoundError,
)
from streamhouse_beam.storage._cloud import RETRY_OPTIONS, CloudStore, InvalidRange, import_sdk

__all__ = ["S3_OPTIONS", "S3Store", "map_client_error"]

#: storage_options an ``s3://`` store accepts.
S3_OPTIONS = RETRY_OPTIONS | {
    "endpoint_url",
    "region_name",
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_session_token",
    "profile_name",
    "addressing_style",
    "max_attempts",
    "connect_timeout",
    "read_timeout",
    "max_pool_connections",
}

# botocore's own attempts per call (1 = no retries). Our loop already retries every
# transient failure, with jitter, a per-store counter and an error that names the key; if
# botocore retried as well the two budgets would multiply (6 x 3 attempts with two backoff
# schedules) and no one setting would bound a call. ``max_attempts`` raises it if wanted.
_BOTO_MAX_ATTEMPTS = 1

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_PERMISSION_CODES = frozenset(
    {
        "AccessDenied",
        "403",
        "Forbidden",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AllAccessDisabled",
        "AccountProblem",
        "InvalidSecurity",
        "InvalidObjectState",  # archived (GLACIER) objects: the store refuses to serve them
        "401",
        "Unauthorized",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "OperationAborted",
        "PriorRequestNotComplete",
        "IDPCommunicationError",
        "EC2ThrottledException",
        "500",
        "502",
        "503",
        "504",
        "429",
    }
)
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_INVALID_RANGE_CODES = frozenset({"InvalidRange", "416", "RequestedRangeNotSatisfiable"})


def _import_boto3() -> Any:
    return import_sdk("boto3", scheme="s3", extra="s3", package="boto3")


class _Secret:
    """A credential that prints as ``***`` wherever it ends up (repr, logs, tracebacks)."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "***"

    __str__ = __repr__

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Secret, (self.value,))


def _status_of(response: Mapping[str, Any]) -> int | None:
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def map_client_error(
    exc: Exception, *, key: str, bucket: str, what: str
) -> StorageError | RetryableFailure | InvalidRange:
    """Translate a botocore ``ClientError`` into the project's error for ``key``.

    Args:
        exc: a ``botocore.exceptions.ClientError``.
        key: the raw object key (named in the error).
        bucket: the bucket the request went to.
        what: the operation, e.g. ``"S3 GET"``.

    Returns:
        :class:`ObjectNotFoundError`, :class:`StoragePermissionError`, a generic
        :class:`StorageError`, a :class:`RetryableFailure` to be retried, or the internal
        invalid-range marker. The caller raises it ``from exc``.
    """
    response: Mapping[str, Any] = getattr(exc, "response", None) or {}
    error = response.get("Error", {}) or {}
    code = str(error.get("Code") or "")
    status = _status_of(response)
    server_message = str(error.get("Message") or "").strip()
    if code and code != str(status):
        detail = code + (f" (HTTP {status})" if status else "")
    else:
        detail = f"HTTP {status}" if status else "error"
    if server_message and server_message not in (code, str(status)):
        detail += f": {server_message}"
    if code in _INVALID_RANGE_CODES or status == 416:
        return InvalidRange()
    if code in _NOT_FOUND_CODES or (status == 404 and code not in ("NoSuchBucket",)):
        return ObjectNotFoundError(f"{what}: object not found", key=key, bucket=bucket)
    if code == "NoSuchBucket":
        return StorageRootNotFoundError(
            f"{what}: bucket does not exist; check the storage url and the segment rows' bucket",
            key=key,
            bucket=bucket,
        )
    if code in _PERMISSION_CODES or status in (401, 403):
        return StoragePermissionError(
            f"{what} refused: {detail}; check the AWS credentials and the bucket policy",
            key=key,
            bucket=bucket,
        )
    if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS:
        return RetryableFailure(detail)
    return StorageError(f"{what} failed: {detail}", key=key, bucket=bucket)


class S3Store(CloudStore):
    """Objects in S3 buckets, read with boto3.

    Args:
        bucket: the URL's bucket, read by every call; ``""`` (``s3://``) reads each segment
            row's bucket.
        endpoint_url: S3 endpoint (MinIO, moto); default from AWS settings / ``S3_ENDPOINT``.
        region_name: AWS region; default from AWS settings.
        aws_access_key_id: access key; default from AWS settings.
        aws_secret_access_key: secret key; default from AWS settings. Never shown.
        aws_session_token: session token; default from AWS settings. Never shown.
        profile_name: an AWS config profile.
        addressing_style: ``"path"``, ``"virtual"`` or ``"auto"`` (MinIO usually needs path).
        max_attempts: botocore's own attempts per request (default 1: our budget retries).
        connect_timeout: seconds to establish a connection (default 10).
        read_timeout: seconds to wait for data on a connection (default 60).
        max_pool_connections: connections kept per client (default 16).
        retry_attempts: attempts per operation for transient failures (default 6).
        retry_base_delay: first backoff ceiling in seconds (default 0.1), doubling per retry.
        retry_max_delay: cap on one backoff sleep in seconds (default 5).
    """

    scheme = "s3"

    def __init__(
        self,
        bucket: str = "",
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        addressing_style: str | None = None,
        max_attempts: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_pool_connections: int | None = None,
        retry_attempts: int | None = None,
        retry_base_delay: float | None = None,
        retry_max_delay: float | None = None,
    ) -> None:
        _import_boto3()
        super().__init__(
            bucket,
            retry_attempts=retry_attempts,
            retry_base_delay=retry_base_delay,
            retry_max_delay=retry_max_delay,
        )
        if addressing_style not in (None, "path", "virtual", "auto"):
            raise ValueError(
                f"addressing_style must be 'path', 'virtual' or 'auto', got {addressing_style!r}"
            )
        if max_attempts is not None and int(max_attempts) < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if value is not None and float(value) <= 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        self.endpoint_url = endpoint_url or None
        self.region_name = region_name or None
        self.profile_name = profile_name or None
        self.addressing_style = addressing_style
        self.max_attempts = int(max_attempts) if max_attempts is not None else _BOTO_MAX_ATTEMPTS
        self.connect_timeout = float(connect_timeout) if connect_timeout is not None else 10.0
        self.read_timeout = float(read_timeout) if read_timeout is not None else 60.0
        self.max_pool_connections = int(max_pool_connections or 16)
        self._access_key = _Secret(aws_access_key_id) if aws_access_key_id else None
        self._secret_key = _Secret(aws_secret_access_key) if aws_secret_access_key else None
        self._session_token = _Secret(aws_session_token) if aws_session_token else None
        self._lock = threading.Lock()
        self._client: Any = None

    # ----------------------------------------------------------------------------------------
    # Identity, pickling, client
    # ----------------------------------------------------------------------------------------

    def __repr__(self) -> str:
        endpoint = f", endpoint_url={self.endpoint_url!r}" if self.endpoint_url else ""
        return f"S3Store({self.url!r}{endpoint})"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _endpoint(self) -> str | None:
        if self.endpoint_url:
            return self.endpoint_url
        if os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"):
            return None  # botocore reads these itself (and honours AWS_IGNORE_CONFIGURED_ENDPOINT_URLS)
        return os.environ.get("S3_ENDPOINT") or None

    def client(self) -> Any:
        """The boto3 S3 client of this store, created on first use (thread-safe)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                boto3 = _import_boto3()
                from botocore.config import Config

                session = boto3.session.Session(profile_name=self.profile_name)
                s3_config: dict[str, Any] = {}
                if self.addressing_style:
                    s3_config["addressing_style"] = self.addressing_style
                config = Config(
                    retries={"total_max_attempts": self.max_attempts, "mode": "standard"},
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    max_pool_connections=self.max_pool_connections,
                    s3=s3_config or None,
                )
                self._client = session.client(
                    "s3",
                    endpoint_url=self._endpoint(),
                    region_name=self.region_name,
                    aws_access_key_id=self._access_key.value if self._access_key else None,
                    aws_secret_access_key=self._secret_key.value if self._secret_key else None,
                    aws_session_token=self._session_token.value if self._session_token else None,
                    config=config,
                )
            return self._client

    # ----------------------------------------------------------------------------------------
    # Calls
    # ----------------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in (self._secret_key, self._session_token):
            if secret is not None and secret.value:
                text = text.replace(secret.value, "***")
        return text

    def _map_error(self, exc: Exception, *, key: str, bucket: str, what: str) -> Exception | None:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionError,
            CredentialRetrievalError,
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
            SSLError,
        )

        if isinstance(exc, ClientError):
            return map_client_error(exc, key=key, bucket=bucket, what=what)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            return StoragePermissionError(
                f"{what}: no usable AWS credentials ({type(exc).__name__}); set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or an instance role",
                key=key,
                bucket=bucket,
            )
        if isinstance(exc, SSLError):
            return StorageError(
                f"{what}: TLS failure talking to S3: {self._scrub(str(exc))}",
                key=key,
                bucket=bucket,
            )
        if isinstance(
            exc,
            (
                ConnectionError,
                HTTPClientError,
                IncompleteReadError,
                # The body did not match the checksum S3 stored with the object: damaged on
                # the way, and S3 holds the good bytes, so fetch it again.
                FlexibleChecksumError,
            ),
        ):
            return RetryableFailure(f"{type(exc).__name__}: {self._scrub(str(exc))}")
        if isinstance(exc, BotoCoreError):
            return StorageError(
                f"{what} failed: {type(exc).__name__}: {self._scrub(str(exc))}",
                key=key,
                bucket=bucket,
            )
        if isinstance(exc, OSError):  # a socket error that escaped botocore's wrapping
            return RetryableFailure(f"{type(exc).__name__}: {exc}")
        return None

    def _read_body(self, response: Mapping[str, Any]) -> bytes:
        body = response["Body"]
        try:
            data: bytes = body.read()
        finally:
            body.close()
        expected = response.get("ContentLength")
        if expected is not None and len(data) != int(expected):
            # A connection cut mid-body that the HTTP layer did not notice.
            raise RetryableFailure(f"truncated body: got {len(data)} of {expected} bytes")
        return data

    def _get(
        self, key: str, bucket: str | None, byte_range: str | None
    ) -> tuple[bytes, Mapping[str, Any]]:
        def attempt(target: str, name: str) -> tuple[bytes, Mapping[str, Any]]:
            kwargs: dict[str, Any] = {"Bucket": target, "Key": name}
            if byte_range is not None:
                kwargs["Range"] = byte_range
            response = self.client().get_object(**kwargs)
            return self._read_body(response), response

        return self._call("S3 GET", key, bucket, attempt)

    def get(self, key: str, *, bucket: str | None = None) -> bytes:
        return self._get(key, bucket, None)[0]

    def _fetch_range(
        self, key: str, bucket: str | None, start: int, end: int
    ) -> tuple[bytes, bool]:
        data, response = self._get(key, bucket, f"bytes={start}-{end - 1}")
        # A server that ignores Range sends the whole object with 200 and no Content-Range.
        return data, not response.get("ContentRange")

    def _fetch_suffix(self, key: str, bucket: str | None, length: int) -> bytes:
        # S3 answers 416 (InvalidRange) to a suffix of an empty object.
        return self._get(key, bucket, f"bytes=-{length}")[0]

    def size(self, key: str, *, bucket: str | None = None) -> int:
        def attempt(target: str, name: str) -> int:
            return int(self.client().head_object(Bucket=target, Key=name)["ContentLength"])

        return self._call("S3 HEAD", key, bucket, attempt)

    def _bucket_exists(self, bucket: str) -> bool | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client().head_bucket(Bucket=bucket)
        except ClientError as exc:
            response: Mapping[str, Any] = getattr(exc, "response", None) or {}
            code = str((response.get("Error") or {}).get("Code") or "")
            if code in ("404", "NoSuchBucket", "NotFound") or _status_of(response) == 404:
                return False
            return None  # refused (HeadBucket needs s3:ListBucket) or failed: cannot tell
        except BotoCoreError:
            return None
        return True

    def put(self, key: str, data: bytes, *, bucket: str | None = None) -> None:
        payload = bytes(data)

        def attempt(target: str, name: str) -> None:
            self.client().put_object(Bucket=target, Key=name, Body=payload)

        self._call("S3 PUT", key, bucket, attempt)

    def _delete(self, key: str, bucket: str | None) -> None:
        def attempt(target: str, name: str) -> None:
            self.client().delete_object(Bucket=target, Key=name)

        self._call("S3 DELETE", key, bucket, attempt)
