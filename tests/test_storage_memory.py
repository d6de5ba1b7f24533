"""The memory:// store: the shared contract plus its process-wide bucket sharing."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Iterator

import pytest

from streamhouse_beam.errors import StorageRootNotFoundError
from streamhouse_beam.storage import open_store
from streamhouse_beam.storage.memory import MemoryStore
from tests.storage_contract import StoreContract


class TestMemoryStoreContract(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        store = open_store(f"memory://test-{uuid.uuid4().hex}")
        assert isinstance(store, MemoryStore)
        yield store
        store.clear()

    @pytest.fixture
    def other_bucket(self) -> Iterator[str]:
        name = f"other-{uuid.uuid4().hex}"
        yield name
        MemoryStore(name).clear()

    @pytest.fixture
    def raw_names(self, store: MemoryStore):  # type: ignore[no-untyped-def]
        # A store opened on the other bucket lists it: ``store`` itself only sees its own.
        return lambda bucket=None: MemoryStore(bucket or store.name).object_names()

    @pytest.fixture
    def secret(self) -> None:
        return None


def test_stores_with_the_same_name_share_objects() -> None:
    name = f"shared-{uuid.uuid4().hex}"
    open_store(f"memory://{name}").put("k", b"v")
    assert open_store(f"memory://{name}").get("k") == b"v"
    assert pickle.loads(pickle.dumps(MemoryStore(name))).get("k") == b"v"
    MemoryStore(name).clear()


def test_stores_with_different_names_are_separate() -> None:
    a, b = MemoryStore(f"a-{uuid.uuid4().hex}"), MemoryStore(f"b-{uuid.uuid4().hex}")
    a.put("k", b"v")
    assert not b.exists("k")
    a.clear()


def test_memory_url_without_name_uses_the_row_bucket_else_the_default_one() -> None:
    row_bucket = f"row-{uuid.uuid4().hex}"
    store = open_store("memory://")
    assert store.url == "memory://"
    store.put("k", b"in the row's bucket", bucket=row_bucket)
    assert MemoryStore(row_bucket).get("k") == b"in the row's bucket"
    store.put("k", b"in default")
    assert MemoryStore("default").get("k") == b"in default"
    store.check_root(bucket=row_bucket)
    with pytest.raises(StorageRootNotFoundError):
        store.check_root(bucket=f"never-{uuid.uuid4().hex}")
    MemoryStore(row_bucket).clear()
    MemoryStore("default").delete("k")


def test_memory_url_with_a_path_is_refused() -> None:
    with pytest.raises(ValueError, match="memory://name"):
        open_store("memory://name/sub")


def test_memory_store_takes_no_options() -> None:
    with pytest.raises(ValueError, match="not understood"):
        open_store("memory://x", {"endpoint_url": "http://x"})
