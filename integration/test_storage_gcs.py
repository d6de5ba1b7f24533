"""The gs:// store against a real gcp-storage-emulator: the shared contract, STORAGE_EMULATOR_HOST,
and retries through a fault-injecting proxy."""

from __future__ import annotations

import pickle
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from streamhouse_beam.errors import (
    ObjectNotFoundError,
    StorageError,
    StoragePermissionError,
    TransientStorageError,
)
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.gcs import GcsStore
from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.servers import GcsEmulator
from tests.storage_contract import StoreContract


def _raw_client(server: GcsEmulator) -> Any:
    return storage.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": server.endpoint},
    )


def _new_bucket(server: GcsEmulator) -> str:
    name = f"b-{uuid.uuid4().hex[:20]}"
    _raw_client(server).create_bucket(name)
    return name


def _names(server: GcsEmulator, bucket: str) -> list[str]:
    return sorted(blob.name for blob in _raw_client(server).list_blobs(bucket))


def _options(endpoint: str, **extra: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "anonymous": True, **extra}


class TestGcsStoreContract(StoreContract):
    @pytest.fixture
    def bucket_name(self, gcs_emulator: GcsEmulator) -> str:
        return _new_bucket(gcs_emulator)

    @pytest.fixture
    def store(self, gcs_emulator: GcsEmulator, bucket_name: str) -> Iterator[GcsStore]:
        store = open_store(f"gs://{bucket_name}", _options(gcs_emulator.endpoint))
        assert isinstance(store, GcsStore)
        yield store
        store.close()

    @pytest.fixture
    def raw_names(self, gcs_emulator: GcsEmulator, bucket_name: str):  # type: ignore[no-untyped-def]
        return lambda bucket=None: _names(gcs_emulator, bucket or bucket_name)

    @pytest.fixture
    def other_bucket(self, gcs_emulator: GcsEmulator) -> str:
        return _new_bucket(gcs_emulator)

    @pytest.fixture
    def secret(self) -> None:
        return None


def test_storage_emulator_host_is_honoured(
    gcs_emulator: GcsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in gcs_emulator.env().items():
        monkeypatch.setenv(name, value)
    bucket = _new_bucket(gcs_emulator)
    store = open_store(f"gs://{bucket}")
    store.put("org-1/data/événements/0/00000000000000000000.seg", b"via env")
    assert _names(gcs_emulator, bucket) == [
        "org-1/data/%C3%A9v%C3%A9nements/0/00000000000000000000.seg"
    ]
    assert store.get_suffix("org-1/data/événements/0/00000000000000000000.seg", 3) == b"env"


def test_bucketless_url_reads_the_row_bucket(gcs_emulator: GcsEmulator) -> None:
    bucket = _new_bucket(gcs_emulator)
    store = open_store("gs://", _options(gcs_emulator.endpoint))
    store.put("data/t/0/x.seg", b"row", bucket=bucket)
    assert store.get("data/t/0/x.seg", bucket=bucket) == b"row"
    with pytest.raises(StorageError, match="no bucket") as info:
        store.get("data/t/0/x.seg")
    assert info.value.key == "data/t/0/x.seg"


def test_thread_gets_its_own_client_and_close_drops_them(gcs_emulator: GcsEmulator) -> None:
    import threading

    bucket = _new_bucket(gcs_emulator)
    store = open_store(f"gs://{bucket}", _options(gcs_emulator.endpoint))
    assert isinstance(store, GcsStore)
    store.put("k", b"v")
    seen: list[Any] = []
    thread = threading.Thread(target=lambda: seen.append(store.client()))
    thread.start()
    thread.join()
    assert seen[0] is not store.client()
    store.close()
    assert store.get("k") == b"v"


# ------------------------------------------------------------------------------ retries


@pytest.fixture
def proxied(gcs_emulator: GcsEmulator) -> Iterator[tuple[GcsStore, FaultProxy]]:
    bucket = _new_bucket(gcs_emulator)
    with FaultProxy(gcs_emulator.endpoint) as proxy:
        store = open_store(f"gs://{bucket}", _options(proxy.endpoint_url, retry_base_delay=0.001))
        assert isinstance(store, GcsStore)
        store.put("data/t/0/x.seg", bytes(range(256)) * 64)
        yield store, proxy


@pytest.mark.parametrize("fault", ["503", "500", "429", "reset", "truncate"])
def test_transient_failures_are_retried_until_success(
    proxied: tuple[GcsStore, FaultProxy], fault: str
) -> None:
    store, proxy = proxied
    proxy.inject(fault, fault)
    assert store.get("data/t/0/x.seg") == bytes(range(256)) * 64
    assert store.retry_count == 2, proxy.history
    assert store.stats() == {"retries": 2}


@pytest.mark.parametrize("fault", ["503", "reset", "truncate"])
def test_ranged_and_suffix_reads_are_retried(
    proxied: tuple[GcsStore, FaultProxy], fault: str
) -> None:
    store, proxy = proxied
    proxy.inject(fault)
    assert store.get_range("data/t/0/x.seg", 256, 512) == bytes(range(256))
    proxy.inject(fault)
    assert store.get_suffix("data/t/0/x.seg", 32) == bytes(range(224, 256))
    assert store.retry_count == 2


def test_size_and_put_are_retried(proxied: tuple[GcsStore, FaultProxy]) -> None:
    store, proxy = proxied
    proxy.inject("503")
    assert store.size("data/t/0/x.seg") == 256 * 64
    proxy.inject("503")
    store.put("data/t/1/y.seg", b"after a 503")
    assert store.get("data/t/1/y.seg") == b"after a 503"
    assert store.retry_count == 2


def test_exhausted_budget_raises_transient_error_naming_the_key(
    proxied: tuple[GcsStore, FaultProxy],
) -> None:
    store, proxy = proxied
    attempts = store.retry_policy.attempts
    proxy.inject(*["503"] * attempts)
    with pytest.raises(TransientStorageError) as info:
        store.get("data/t/0/x.seg")
    assert info.value.key == "data/t/0/x.seg"
    assert f"{attempts} time(s)" in str(info.value)
    assert store.retry_count == attempts - 1
    assert proxy.pending() == 0


def test_forbidden_is_a_permission_error_and_not_retried(
    proxied: tuple[GcsStore, FaultProxy],
) -> None:
    store, proxy = proxied
    proxy.inject("403", "403")
    with pytest.raises(StoragePermissionError) as info:
        store.get("data/t/0/x.seg")
    assert info.value.key == "data/t/0/x.seg"
    assert store.retry_count == 0
    proxy.clear()


def test_not_found_is_not_retried(proxied: tuple[GcsStore, FaultProxy]) -> None:
    store, proxy = proxied
    before = proxy.requests_seen
    with pytest.raises(ObjectNotFoundError):
        store.get("data/t/0/missing.seg")
    assert proxy.requests_seen == before + 1


def test_pickled_copy_reads_after_use(proxied: tuple[GcsStore, FaultProxy]) -> None:
    store, proxy = proxied
    proxy.inject("503")
    store.get("data/t/0/x.seg")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.retry_count == 0
    assert copy.get_range("data/t/0/x.seg", 0, 4) == bytes(range(4))


def test_reads_send_only_object_requests(gcs_emulator: GcsEmulator) -> None:
    # No background bucket-metadata fetches: a read-only account could not make them, and
    # they would race with the store's own requests.
    bucket = _new_bucket(gcs_emulator)
    with FaultProxy(gcs_emulator.endpoint) as proxy:
        store = open_store(f"gs://{bucket}", _options(proxy.endpoint_url))
        store.put("k", b"value")
        assert store.get_range("k", 1, 3) == b"al"
        assert store.size("k") == 5
        paths = [line.split("?")[0] for line, _fault in proxy.history]
        assert all("/o" in path for path in paths), paths
        assert len(paths) == 3


def test_gcs_emulator_starts_answers_and_stops() -> None:
    with GcsEmulator() as server:
        assert server.running
        assert server.env()["STORAGE_EMULATOR_HOST"] == server.endpoint
        with urllib.request.urlopen(server.endpoint + "/", timeout=5) as response:
            assert response.read() == b"OK"
        server.wipe()
    assert not server.running


def test_used_store_survives_beams_own_pickler(gcs_emulator: GcsEmulator) -> None:
    from apache_beam.internal import pickler

    bucket = _new_bucket(gcs_emulator)
    store = open_store(f"gs://{bucket}", _options(gcs_emulator.endpoint))
    store.put("k", b"beam")
    assert store.get("k") == b"beam"  # thread-local clients exist now
    copy = pickler.loads(pickler.dumps(store))
    assert copy.get_suffix("k", 2) == b"am"
