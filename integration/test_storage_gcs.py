"""The gs:// store against a real gcp-storage-emulator: the shared contract, STORAGE_EMULATOR_HOST,
and retries through a fault-injecting proxy."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from _cloud_store_contract import CloudStoreContract
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

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


class TestGcsStoreContract(StoreContract, CloudStoreContract):
    throttle_text = "HTTP 503"

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

    @pytest.fixture
    def server_endpoint(self, gcs_emulator: GcsEmulator) -> str:
        return gcs_emulator.endpoint

    @pytest.fixture
    def new_bucket(self, gcs_emulator: GcsEmulator) -> Callable[[], str]:
        return lambda: _new_bucket(gcs_emulator)

    @pytest.fixture
    def open_cloud(self, gcs_emulator: GcsEmulator) -> Callable[..., GcsStore]:
        def open_cloud(bucket: str, via: str | None = None, **extra: Any) -> GcsStore:
            store = open_store(f"gs://{bucket}", _options(via or gcs_emulator.endpoint, **extra))
            assert isinstance(store, GcsStore)
            return store

        return open_cloud

    def holds_no_client(self, store: GcsStore) -> bool:
        return not store._clients


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
