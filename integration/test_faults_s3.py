"""Object-store faults against a real S3 server: moto_server behind a fault-injecting proxy.

The proxy (``streamhouse_beam.testing.fault_proxy``) fails a seeded share of GETs with 500/503
answers, TCP resets, bodies cut short under a larger ``Content-Length`` and answers that
stall past the client's read timeout. The S3 store must retry every one of them and return
exactly the stored bytes; a bounded Beam read through the proxy must produce exactly the
records written, with the retries visible as a Beam counter.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streamhouse_beam.errors import TransientStorageError
from streamhouse_beam.storage import open_store
from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.servers import MotoServer

BUCKET = "faults"
OBJECT = bytes(range(256)) * 257  # 65,792 bytes: big enough to cut in half


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def _s3_options(moto: MotoServer, endpoint: str, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = dict(moto.credentials())
    options.update(
        endpoint_url=endpoint,
        read_timeout=0.5,
        connect_timeout=2,
        retry_attempts=12,
        retry_base_delay=0.01,
        retry_max_delay=0.05,
    )
    options.update(extra)
    return options


@pytest.fixture(scope="module")
def seeded(moto: MotoServer) -> str:
    store = open_store(f"s3://{BUCKET}", moto.credentials())
    store.client().create_bucket(Bucket=BUCKET)  # type: ignore[attr-defined]
    store.put("org-1/data/t/0/00000000000000000000.seg", OBJECT)
    store.close()
    return "org-1/data/t/0/00000000000000000000.seg"


@pytest.mark.parametrize("fault", ["500", "503", "reset", "truncate", "slow"])
def test_each_fault_kind_is_retried_to_the_exact_bytes(
    moto: MotoServer, seeded: str, fault: str
) -> None:
    with FaultProxy(
        moto.endpoint_url, failure_rate=0.5, faults=[fault], seed=1, slow_seconds=1.5
    ) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url))
        for _ in range(6):
            assert store.get(seeded) == OBJECT
        assert store.get_range(seeded, 100, 5000) == OBJECT[100:5000]
        assert store.get_suffix(seeded, 32) == OBJECT[-32:]
        assert store.size(seeded) == len(OBJECT)
        injected = proxy.stats()[fault]
        assert injected > 0
        # Every injected fault cost exactly one retry (HEAD answers to size() that the proxy
        # cannot truncate become 500s, which are retried too).
        assert store.retry_count == proxy.stats()["injected"]
        store.close()


def test_thirty_percent_mixed_faults_still_return_exact_bytes(
    moto: MotoServer, seeded: str
) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=0.3, seed=42, slow_seconds=1.0) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url))
        for start in range(0, len(OBJECT), 8192):
            assert store.get_range(seeded, start, start + 8192) == OBJECT[start : start + 8192]
        stats = proxy.stats()
        assert stats["injected"] >= 1
        assert store.retry_count == stats["injected"]
        store.close()


def test_persistent_faults_exhaust_the_budget_with_an_error_naming_the_key(
    moto: MotoServer, seeded: str
) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=1.0, faults=["503", "reset"]) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url, retry_attempts=3))
        with pytest.raises(TransientStorageError) as info:
            store.get(seeded)
        assert info.value.key == seeded
        assert seeded in str(info.value)
        assert proxy.stats()["injected"] == 3
        store.close()


def test_truncated_bodies_are_never_returned_as_data(moto: MotoServer, seeded: str) -> None:
    with FaultProxy(moto.endpoint_url, failure_rate=1.0, faults=["truncate"]) as proxy:
        store = open_store(f"s3://{BUCKET}", _s3_options(moto, proxy.url, retry_attempts=2))
        with pytest.raises(TransientStorageError):
            store.get(seeded)
        assert proxy.stats()["truncate"] == 2
        store.close()
