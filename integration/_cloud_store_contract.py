"""What the s3:// and gs:// stores share beyond :class:`StoreContract`: row buckets on a
bucket-less URL, retries through a fault-injecting proxy, and surviving both picklers.

A test class mixes in :class:`CloudStoreContract` next to ``StoreContract`` and provides:

``server_endpoint``
    the real server's ``http://127.0.0.1:port`` endpoint, for a :class:`FaultProxy` to front.
``new_bucket``
    ``new_bucket() -> str``: creates a fresh, empty bucket and returns its name.
``open_cloud``
    ``open_cloud(bucket, via=None, **options) -> ObjectStore``: opens ``<scheme>://<bucket>``
    against the server, or against the proxy endpoint ``via``, with extra store options.

and the class attributes :attr:`CloudStoreContract.throttle_text` and the method
:meth:`CloudStoreContract.holds_no_client`.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streamhouse_beam.errors import (
    ObjectNotFoundError,
    StorageError,
    StoragePermissionError,
    TransientStorageError,
)
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.testing.fault_proxy import FaultProxy

OpenCloud = Callable[..., Any]
SEGMENT = "data/t/0/x.seg"
BODY = bytes(range(256)) * 64


class CloudStoreContract:
    """Mix into a test class that provides the fixtures named in the module docstring."""

    #: Text the backend's error names a throttling 503 by, once the retry budget is spent.
    throttle_text = ""

    def holds_no_client(self, store: Any) -> bool:
        """Whether ``store`` (just unpickled) holds no client of the pickled original."""
        raise NotImplementedError

    @pytest.fixture
    def proxied(
        self, server_endpoint: str, new_bucket: Callable[[], str], open_cloud: OpenCloud
    ) -> Iterator[tuple[Any, FaultProxy]]:
        with FaultProxy(server_endpoint) as proxy:
            store = open_cloud(new_bucket(), via=proxy.endpoint_url, retry_base_delay=0.001)
            store.put(SEGMENT, BODY)
            yield store, proxy

    # ------------------------------------------------------------------ buckets

    def test_bucketless_url_reads_the_row_bucket(
        self, new_bucket: Callable[[], str], open_cloud: OpenCloud
    ) -> None:
        bucket = new_bucket()
        store = open_cloud("")
        store.put(SEGMENT, b"row", bucket=bucket)
        assert store.get(SEGMENT, bucket=bucket) == b"row"
        with pytest.raises(StorageError, match="no bucket") as info:
            store.get(SEGMENT)
        assert info.value.key == SEGMENT
        with pytest.raises(StorageError, match="no bucket"):
            store.get(SEGMENT, bucket="")

    # ------------------------------------------------------------------ retries

    @pytest.mark.parametrize("fault", ["503", "500", "429", "reset", "truncate"])
    def test_transient_failures_are_retried_until_success(
        self, proxied: tuple[Any, FaultProxy], fault: str
    ) -> None:
        store, proxy = proxied
        proxy.inject(fault, fault, fault)
        assert store.get(SEGMENT) == BODY
        assert store.retry_count == 3, proxy.history
        assert store.stats() == {"retries": 3}
        assert proxy.pending() == 0

    @pytest.mark.parametrize("fault", ["503", "reset", "truncate"])
    def test_ranged_and_suffix_reads_are_retried(
        self, proxied: tuple[Any, FaultProxy], fault: str
    ) -> None:
        store, proxy = proxied
        proxy.inject(fault)
        assert store.get_range(SEGMENT, 256, 512) == bytes(range(256))
        proxy.inject(fault)
        assert store.get_suffix(SEGMENT, 32) == bytes(range(224, 256))
        assert store.retry_count == 2

    def test_size_and_put_are_retried(self, proxied: tuple[Any, FaultProxy]) -> None:
        store, proxy = proxied
        proxy.inject("503", "reset")
        assert store.size(SEGMENT) == len(BODY)
        proxy.inject("503")
        store.put("data/t/1/y.seg", b"after a 503")
        assert store.get("data/t/1/y.seg") == b"after a 503"
        assert store.retry_count == 3

    def test_exhausted_budget_raises_transient_error_naming_the_key(
        self, proxied: tuple[Any, FaultProxy]
    ) -> None:
        store, proxy = proxied
        attempts = store.retry_policy.attempts
        proxy.inject(*["503"] * attempts)
        with pytest.raises(TransientStorageError) as info:
            store.get(SEGMENT)
        assert info.value.key == SEGMENT
        assert f"{attempts} time(s)" in str(info.value)
        assert self.throttle_text in str(info.value)
        assert info.value.__cause__ is not None
        assert store.retry_count == attempts - 1
        assert proxy.pending() == 0
        assert store.get(SEGMENT)  # the next call starts a fresh budget

    def test_permission_errors_are_not_retried(self, proxied: tuple[Any, FaultProxy]) -> None:
        store, proxy = proxied
        proxy.inject("403", "403")
        with pytest.raises(StoragePermissionError) as info:
            store.get(SEGMENT)
        assert info.value.key == SEGMENT
        assert store.retry_count == 0
        assert proxy.pending() == 1
        proxy.clear()

    def test_not_found_is_not_retried(self, proxied: tuple[Any, FaultProxy]) -> None:
        store, proxy = proxied
        before = proxy.requests_seen
        with pytest.raises(ObjectNotFoundError):
            store.get("data/t/0/missing.seg")
        assert proxy.requests_seen == before + 1

    # ------------------------------------------------------------------ pickling

    def test_pickled_copy_gets_a_fresh_client_and_retry_count(
        self, proxied: tuple[Any, FaultProxy]
    ) -> None:
        store, proxy = proxied
        proxy.inject("503")
        store.get(SEGMENT)
        copy = pickle.loads(pickle.dumps(store))
        assert self.holds_no_client(copy)
        assert copy.retry_count == 0
        assert copy.get_range(SEGMENT, 0, 4) == bytes(range(4))

    def test_used_store_survives_beams_own_pickler(
        self, new_bucket: Callable[[], str], open_cloud: OpenCloud
    ) -> None:
        from apache_beam.internal import pickler

        store: ObjectStore = open_cloud(new_bucket())
        store.put("k", b"beam")
        assert store.get("k") == b"beam"  # clients (and their locks) exist now
        copy = pickler.loads(pickler.dumps(store))
        assert copy.get_suffix("k", 2) == b"am"
