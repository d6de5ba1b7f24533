"""Error mapping of the network backends and the retry loop, without a server.

The S3 cases are botocore ClientErrors built from the parsed-response dicts botocore produces
for real S3 answers; the GCS cases are google-api-core exceptions as the library raises them.
Behaviour against live servers is covered in integration/test_storage_{s3,gcs}.py.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError
from google.api_core import exceptions as api

from streamhouse_beam._retry import (
    RetryableFailure,
    RetryCounter,
    RetryPolicy,
    call_with_retry,
    storage_give_up,
)
from streamhouse_beam.errors import (
    ObjectNotFoundError,
    StorageError,
    StoragePermissionError,
    StorageRootNotFoundError,
    TransientStorageError,
)
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.gcs import GcsStore, map_google_error
from streamhouse_beam.storage.s3 import S3Store, map_client_error


def _client_error(code: str, status: int, message: str = "", op: str = "GetObject") -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}, "RetryAttempts": 0},
    }
    return ClientError(response, op)


def _s3(code: str, status: int, message: str = "") -> object:
    return map_client_error(
        _client_error(code, status, message), key="k", bucket="b", what="S3 GET"
    )


# ------------------------------------------------------------------------------ S3 mapping


@pytest.mark.parametrize(
    ("code", "status"),
    [("NoSuchKey", 404), ("404", 404), ("NotFound", 404)],
)
def test_s3_missing_object_maps_to_not_found_with_key(code: str, status: int) -> None:
    err = _s3(code, status, "The specified key does not exist.")
    assert isinstance(err, ObjectNotFoundError)
    assert (err.key, err.bucket) == ("k", "b")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("AccessDenied", 403),
        ("403", 403),
        ("InvalidAccessKeyId", 403),
        ("SignatureDoesNotMatch", 403),
        ("ExpiredToken", 400),
        ("InvalidObjectState", 403),
    ],
)
def test_s3_refusals_map_to_permission_error(code: str, status: int) -> None:
    err = _s3(code, status, "refused")
    assert isinstance(err, StoragePermissionError)
    assert err.key == "k"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("SlowDown", 503),
        ("503", 503),
        ("ServiceUnavailable", 503),
        ("InternalError", 500),
        ("RequestTimeout", 400),
        ("Throttling", 400),
        ("", 502),
        ("TooManyRequests", 429),
    ],
)
def test_s3_throttling_and_server_errors_are_retryable(code: str, status: int) -> None:
    assert isinstance(_s3(code, status), RetryableFailure)


def test_s3_missing_bucket_is_a_storage_root_error_not_a_missing_object() -> None:
    err = _s3("NoSuchBucket", 404, "The specified bucket does not exist")
    assert type(err) is StorageRootNotFoundError
    assert not isinstance(err, ObjectNotFoundError)
    assert "bucket does not exist" in str(err)


def test_s3_unknown_error_is_a_storage_error_with_code_and_message() -> None:
    err = _s3("InvalidArgument", 400, "Bad thing")
    assert type(err) is StorageError
    assert "InvalidArgument" in str(err) and "Bad thing" in str(err)


def test_s3_store_repr_and_pickle_hide_credentials() -> None:
    store = S3Store(
        "bucket",
        aws_access_key_id="AKIAEXAMPLE",
        aws_secret_access_key="very-secret-value",
        aws_session_token="session-token-value",
    )
    for text in (repr(store), str(store), store.url, repr(store.__dict__)):
        assert "very-secret-value" not in text
        assert "session-token-value" not in text
    copy = pickle.loads(pickle.dumps(store))
    assert copy._secret_key.value == "very-secret-value"  # still usable on the worker
    assert copy._client is None


def test_s3_store_is_picklable_without_ever_connecting() -> None:
    store = open_store("s3://bucket", {"region_name": "eu-west-1", "addressing_style": "path"})
    copy = pickle.loads(pickle.dumps(store))
    assert copy.url == "s3://bucket"
    assert repr(copy) == "S3Store('s3://bucket')"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"addressing_style": "sideways"}, "addressing_style"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"read_timeout": 0}, "read_timeout"),
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"endpoint": "http://x"}, "not understood"),
    ],
)
def test_s3_bad_options_are_argument_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        open_store("s3://bucket", options)


def test_s3_url_with_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="s3://bucket"):
        open_store("s3://bucket/prefix")


# ------------------------------------------------------------------------------ GCS mapping


def _gcs(exc: BaseException) -> object:
    return map_google_error(exc, key="k", bucket="b", what="GCS GET")


def test_gcs_not_found_maps_to_not_found_with_key() -> None:
    err = _gcs(api.NotFound("No such object: b/k"))
    assert isinstance(err, ObjectNotFoundError)
    assert err.key == "k"


@pytest.mark.parametrize("exc", [api.Forbidden("denied"), api.Unauthorized("who are you")])
def test_gcs_refusals_map_to_permission_error(exc: Exception) -> None:
    assert isinstance(_gcs(exc), StoragePermissionError)


@pytest.mark.parametrize(
    "exc",
    [
        api.TooManyRequests("slow down"),
        api.InternalServerError("oops"),
        api.BadGateway("bad gateway"),
        api.ServiceUnavailable("unavailable"),
        api.GatewayTimeout("timeout"),
        api.from_http_status(408, "request timeout"),
        requests.exceptions.ConnectionError("reset"),
        requests.exceptions.ReadTimeout("slow"),
        requests.exceptions.ChunkedEncodingError("cut"),
        ConnectionResetError("reset"),
    ],
)
def test_gcs_transient_failures_are_retryable(exc: Exception) -> None:
    assert isinstance(_gcs(exc), RetryableFailure)


def test_gcs_other_api_errors_are_storage_errors() -> None:
    err = _gcs(api.BadRequest("bad"))
    assert type(err) is StorageError


def test_gcs_unknown_exceptions_are_left_alone() -> None:
    assert _gcs(KeyError("x")) is None


def test_gcs_store_is_picklable_without_ever_connecting() -> None:
    store = open_store("gs://bucket", {"anonymous": True, "timeout": 5})
    copy = pickle.loads(pickle.dumps(store))
    assert isinstance(copy, GcsStore)
    assert copy.url == "gs://bucket"
    assert copy.timeout == 5


def test_gcs_unknown_option_is_refused() -> None:
    with pytest.raises(ValueError, match="not understood"):
        open_store("gs://bucket", {"region_name": "x"})


# ------------------------------------------------------------------------------ retry loop


def test_retry_loop_returns_after_transient_failures_and_counts_them() -> None:
    outcomes = [RetryableFailure("503"), RetryableFailure("reset"), "ok"]
    sleeps: list[float] = []
    counter = RetryCounter()

    def attempt() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    result = call_with_retry(
        attempt,
        RetryPolicy(attempts=5, base_delay=1.0, max_delay=1.5),
        give_up=storage_give_up("X", key="k", bucket="b"),
        counter=counter,
        sleep=sleeps.append,
    )
    assert result == "ok"
    assert counter.value == 2
    assert len(sleeps) == 2
    assert 0 <= sleeps[0] <= 1.0 and 0 <= sleeps[1] <= 1.5


def test_retry_loop_gives_up_with_transient_error_chained_to_the_cause() -> None:
    cause = OSError("connection reset by peer")

    def attempt() -> None:
        raise RetryableFailure("ConnectionResetError") from cause

    with pytest.raises(TransientStorageError) as info:
        call_with_retry(
            attempt,
            RetryPolicy(attempts=3),
            give_up=storage_give_up("S3 GET", key="data/x.seg", bucket="b"),
            sleep=lambda _s: None,
        )
    assert info.value.key == "data/x.seg"
    assert "3 time(s)" in str(info.value)
    assert info.value.__cause__ is cause


def test_retry_loop_does_not_retry_final_errors() -> None:
    calls = 0

    def attempt() -> None:
        nonlocal calls
        calls += 1
        raise ObjectNotFoundError("gone", key="k")

    with pytest.raises(ObjectNotFoundError):
        call_with_retry(
            attempt,
            RetryPolicy(),
            give_up=storage_give_up("X", key="k", bucket=None),
            sleep=lambda _s: None,
        )
    assert calls == 1


def test_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=3.0)
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        assert all(0 <= policy.delay(retry) <= ceiling for _ in range(50))


def test_retry_counter_pickles_to_zero() -> None:
    counter = RetryCounter()
    counter.increment()
    assert pickle.loads(pickle.dumps(counter)).value == 0
