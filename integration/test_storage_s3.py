"""The s3:// store against a real moto_server: the shared contract, AWS settings, real
permission errors (moto with IAM enforcement) and retries through a fault-injecting proxy."""

from __future__ import annotations

import concurrent.futures
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from _cloud_store_contract import CloudStoreContract

from streamhouse_beam.errors import (
    StorageError,
    StoragePermissionError,
    TransientStorageError,
)
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.s3 import S3Store
from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.servers import MotoServer
from tests.storage_contract import StoreContract

SECRET = "s3cr3t-" + uuid.uuid4().hex


def _raw_client(server: MotoServer) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        region_name=server.region,
        aws_access_key_id=server.ACCESS_KEY,
        aws_secret_access_key=server.SECRET_KEY,
    )


def _new_bucket(server: MotoServer) -> str:
    name = f"b-{uuid.uuid4().hex[:20]}"
    _raw_client(server).create_bucket(Bucket=name)
    return name


def _names(server: MotoServer, bucket: str) -> list[str]:
    listing = _raw_client(server).list_objects_v2(Bucket=bucket)
    return sorted(obj["Key"] for obj in listing.get("Contents", []))


def _options(server: MotoServer, **extra: Any) -> dict[str, Any]:
    return {**server.credentials(), "aws_secret_access_key": SECRET, **extra}


class TestS3StoreContract(StoreContract, CloudStoreContract):
    throttle_text = "SlowDown"

    @pytest.fixture
    def bucket_name(self, moto_server: MotoServer) -> str:
        return _new_bucket(moto_server)

    @pytest.fixture
    def store(self, moto_server: MotoServer, bucket_name: str) -> Iterator[S3Store]:
        store = open_store(f"s3://{bucket_name}", _options(moto_server))
        assert isinstance(store, S3Store)
        yield store
        store.close()

    @pytest.fixture
    def raw_names(self, moto_server: MotoServer, bucket_name: str):  # type: ignore[no-untyped-def]
        return lambda bucket=None: _names(moto_server, bucket or bucket_name)

    @pytest.fixture
    def other_bucket(self, moto_server: MotoServer) -> str:
        return _new_bucket(moto_server)

    @pytest.fixture
    def secret(self) -> str:
        return SECRET

    @pytest.fixture
    def server_endpoint(self, moto_server: MotoServer) -> str:
        return moto_server.endpoint_url

    @pytest.fixture
    def new_bucket(self, moto_server: MotoServer) -> Callable[[], str]:
        return lambda: _new_bucket(moto_server)

    @pytest.fixture
    def open_cloud(self, moto_server: MotoServer) -> Callable[..., S3Store]:
        def open_cloud(bucket: str, via: str | None = None, **extra: Any) -> S3Store:
            if via is not None:
                extra["endpoint_url"] = via
            store = open_store(f"s3://{bucket}", _options(moto_server, **extra))
            assert isinstance(store, S3Store)
            return store

        return open_cloud

    def holds_no_client(self, store: S3Store) -> bool:
        return store._client is None


# ------------------------------------------------------------------------------ settings


def test_moto_server_starts_answers_and_stops() -> None:
    with MotoServer() as server:
        assert server.running
        assert server.endpoint_url.startswith("http://127.0.0.1:")
        assert server.env()["AWS_ENDPOINT_URL"] == server.endpoint_url
        server.reset()
        url = server.endpoint_url
    assert not server.running
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/moto-api/", timeout=2)


def test_aws_endpoint_url_from_the_environment_is_used(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in moto_server.env().items():
        monkeypatch.setenv(name, value)
    bucket = _new_bucket(moto_server)
    store = open_store(f"s3://{bucket}", {"addressing_style": "path"})
    store.put("data/t/0/x.seg", b"via env")
    assert _names(moto_server, bucket) == ["data/t/0/x.seg"]


def test_streamhouse_s3_endpoint_variable_is_the_fallback(
    moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = moto_server.env()
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("S3_ENDPOINT", env["AWS_ENDPOINT_URL"])
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"):
        monkeypatch.setenv(name, env[name])
    bucket = _new_bucket(moto_server)
    open_store(f"s3://{bucket}", {"addressing_style": "path"}).put("k", b"v")
    assert _names(moto_server, bucket) == ["k"]


def test_missing_bucket_is_a_storage_error_naming_it(moto_server: MotoServer) -> None:
    store = open_store("s3://no-such-bucket-here", _options(moto_server))
    with pytest.raises(StorageError, match="bucket does not exist") as info:
        store.get("k")
    assert info.value.bucket == "no-such-bucket-here"


def test_one_store_serves_many_threads(moto_server: MotoServer) -> None:
    bucket = _new_bucket(moto_server)
    store = open_store(f"s3://{bucket}", _options(moto_server))
    for i in range(8):
        store.put(f"data/t/{i}/x.seg", bytes([i]) * 1000)

    def read(i: int) -> bytes:
        return store.get_range(f"data/t/{i % 8}/x.seg", 10, 20)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, range(64)))
    assert results == [bytes([i % 8]) * 10 for i in range(64)]


# ------------------------------------------------------------------------------ permissions


@pytest.fixture
def enforced_auth(moto_server: MotoServer) -> Iterator[dict[str, str]]:
    """moto checking signatures and IAM policies; yields a user's keys that no policy allows."""
    bucket = _new_bucket(moto_server)
    _raw_client(moto_server).put_object(Bucket=bucket, Key="k", Body=b"secret data")
    iam = boto3.client(
        "iam",
        endpoint_url=moto_server.endpoint_url,
        region_name=moto_server.region,
        aws_access_key_id=moto_server.ACCESS_KEY,
        aws_secret_access_key=moto_server.SECRET_KEY,
    )
    user = f"reader-{uuid.uuid4().hex[:8]}"
    iam.create_user(UserName=user)
    keys = iam.create_access_key(UserName=user)["AccessKey"]
    previous = moto_server.set_auth_enforcement(0)
    try:
        yield {
            "bucket": bucket,
            "aws_access_key_id": keys["AccessKeyId"],
            "aws_secret_access_key": keys["SecretAccessKey"],
        }
    finally:
        moto_server.set_auth_enforcement(float(previous))


@pytest.mark.parametrize(
    ("credentials", "code"),
    [
        ("user-without-policy", "AccessDenied"),
        ("unknown-key", "InvalidAccessKeyId"),
        ("wrong-secret", "SignatureDoesNotMatch"),
    ],
)
def test_refused_credentials_raise_permission_error_with_key_and_no_secret(
    moto_server: MotoServer, enforced_auth: dict[str, str], credentials: str, code: str
) -> None:
    options = {**moto_server.credentials()}
    if credentials == "user-without-policy":
        options["aws_access_key_id"] = enforced_auth["aws_access_key_id"]
        options["aws_secret_access_key"] = enforced_auth["aws_secret_access_key"]
    elif credentials == "unknown-key":
        options["aws_access_key_id"] = "AKIAUNKNOWNUNKNOWN00"
        options["aws_secret_access_key"] = SECRET
    else:
        options["aws_access_key_id"] = enforced_auth["aws_access_key_id"]
        options["aws_secret_access_key"] = SECRET
    store = open_store(f"s3://{enforced_auth['bucket']}", options)
    with pytest.raises(StoragePermissionError) as info:
        store.get("k")
    assert info.value.key == "k"
    assert code in str(info.value)
    with pytest.raises(StoragePermissionError):
        store.size("k")  # HEAD: a bare 403 without a body
    assert store.retry_count == 0
    for text in (str(info.value), repr(info.value), repr(store)):
        assert SECRET not in text
        assert enforced_auth["aws_secret_access_key"] not in text


# ------------------------------------------------------------------------------ retries


def test_retry_budget_is_configurable(moto_server: MotoServer) -> None:
    bucket = _new_bucket(moto_server)
    with FaultProxy(moto_server.endpoint_url) as proxy:
        store = open_store(
            f"s3://{bucket}",
            _options(moto_server, endpoint_url=proxy.endpoint_url, retry_attempts=2),
        )
        proxy.inject("503", "503", "503")
        with pytest.raises(TransientStorageError, match="2 time"):
            store.put("k", b"v")
        assert proxy.requests_seen == 2
