"""The fault injectors themselves: FaultyStore and FaultProxy do what the reliability and storage
tests rely on."""

from __future__ import annotations

import http.client
import http.server
import pickle
import threading
from collections.abc import Iterator

import pytest

from streamhouse_beam._retry import RetryPolicy
from streamhouse_beam.errors import TransientStorageError
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.fault_proxy import FaultProxy
from streamhouse_beam.testing.faulty_store import FaultyStore

PAYLOAD = bytes(range(256)) * 40


@pytest.fixture
def memory() -> MemoryStore:
    store = MemoryStore("fault-injection")
    store.put("t/0/a.seg", PAYLOAD)
    store.put("t/0/b.seg", b"second")
    return store


def test_transient_faults_are_retried_and_counted(memory: MemoryStore) -> None:
    store = FaultyStore(memory, failure_rate=0.3, seed=11)
    assert all(store.get("t/0/a.seg") == PAYLOAD for _ in range(200))
    stats = store.stats()
    assert stats["injected"] > 20
    assert stats["retries"] == stats["injected"] == store.retry_count


def test_same_seed_gives_same_fault_sequence(memory: MemoryStore) -> None:
    def run() -> dict[str, int]:
        store = FaultyStore(memory, failure_rate=0.5, seed=5)
        for _ in range(50):
            store.get("t/0/a.seg")
        return store.stats()

    assert run() == run()


def test_exhausted_budget_raises_transient_error_naming_the_key(memory: MemoryStore) -> None:
    store = FaultyStore(memory, retry_policy=RetryPolicy(attempts=3, base_delay=0.0))
    store.fail_next("t/0/a.seg", times=3, fault="reset")
    with pytest.raises(TransientStorageError, match=r"t/0/a\.seg"):
        store.get("t/0/a.seg")
    assert store.get("t/0/a.seg") == PAYLOAD


def test_data_faults_damage_bytes_without_raising(memory: MemoryStore) -> None:
    store = FaultyStore(memory)
    store.truncate_next("t/0/a.seg")
    store.corrupt_next("t/0/a.seg")
    truncated = store.get("t/0/a.seg")
    corrupted = store.get("t/0/a.seg")
    assert truncated == PAYLOAD[: len(PAYLOAD) // 2]
    assert len(corrupted) == len(PAYLOAD) and corrupted != PAYLOAD
    assert store.get("t/0/a.seg") == PAYLOAD
    assert store.stats()["truncate"] == store.stats()["corrupt"] == 1


def test_delete_when_read_removes_the_victim_after_the_trigger(memory: MemoryStore) -> None:
    store = FaultyStore(memory)
    store.delete_when_read("t/0/a.seg", "t/0/b.seg")
    assert memory.exists("t/0/b.seg")
    store.get("t/0/a.seg")
    assert not memory.exists("t/0/b.seg")
    assert store.stats()["deleted"] == 1


def test_pickled_copies_share_the_plan_and_counters(memory: MemoryStore) -> None:
    store = FaultyStore(memory)
    copy = pickle.loads(pickle.dumps(store))
    store.fail_next("t/0/a.seg", times=2)
    assert copy.get("t/0/a.seg") == PAYLOAD
    assert store.retry_count == 2


def test_faulty_store_rejects_bad_arguments(memory: MemoryStore) -> None:
    with pytest.raises(ValueError, match="failure_rate"):
        FaultyStore(memory, failure_rate=1.5)
    with pytest.raises(ValueError, match="faults"):
        FaultyStore(memory, faults=["explode"])


# --------------------------------------------------------------------------------------------
# FaultProxy against a tiny in-process upstream
# --------------------------------------------------------------------------------------------


class _Upstream(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(PAYLOAD)

    do_HEAD = do_GET

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def upstream() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    # shutdown() waits for the next poll: 0.5 s per test at the default interval.
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _fetch(url: str, method: str = "GET") -> tuple[str, bytes | int]:
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=0.5)
    try:
        conn.request(method, "/obj", body=b"upload" if method == "PUT" else None)
        resp = conn.getresponse()
        body = resp.read()
        if method == "HEAD" and resp.status == 200:
            return ("ok", int(resp.getheader("Content-Length") or -1))
        return ("ok", body) if resp.status == 200 else ("status", resp.status)
    except http.client.IncompleteRead:
        return ("incomplete", 0)
    except (ConnectionError, http.client.RemoteDisconnected):
        return ("reset", 0)
    except TimeoutError:
        return ("timeout", 0)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("500", ("status", 500)),
        ("503", ("status", 503)),
        ("reset", ("reset", 0)),
        ("truncate", ("incomplete", 0)),
        ("slow", ("timeout", 0)),
    ],
)
def test_proxy_injects_each_fault_kind(
    upstream: str, fault: str, expected: tuple[str, int]
) -> None:
    with FaultProxy(upstream, failure_rate=1.0, faults=[fault], slow_seconds=2.0) as proxy:
        assert _fetch(proxy.url) == expected
        assert proxy.stats()[fault] == 1


def test_proxy_forwards_untouched_when_not_failing(upstream: str) -> None:
    with FaultProxy(upstream, failure_rate=0.0) as proxy:
        assert _fetch(proxy.url) == ("ok", PAYLOAD)
        assert proxy.stats()["forwarded"] == 1


def test_proxy_fault_share_is_deterministic_for_a_seed(upstream: str) -> None:
    def run() -> list[str]:
        with FaultProxy(upstream, failure_rate=0.3, faults=["500", "503"], seed=3) as proxy:
            return [_fetch(proxy.url)[0] for _ in range(40)]

    first = run()
    assert first == run()
    assert 4 <= first.count("status") <= 24


def test_queued_faults_hit_the_next_requests_in_order(upstream: str) -> None:
    with FaultProxy(upstream, failure_rate=0.0) as proxy:
        proxy.inject("429", "403")
        assert proxy.pending() == 2
        assert _fetch(proxy.endpoint_url) == ("status", 429)
        assert _fetch(proxy.endpoint_url) == ("status", 403)
        assert _fetch(proxy.endpoint_url) == ("ok", PAYLOAD)
        assert (proxy.requests_seen, proxy.faults_served, proxy.pending()) == (3, 2, 0)


def test_proxy_is_transparent_until_told_to_fail(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        results = [_fetch(proxy.url, method) for method in ("GET", "HEAD", "PUT") * 5]
        assert results == [("ok", PAYLOAD), ("ok", len(PAYLOAD)), ("ok", b"")] * 5
        assert proxy.stats()["injected"] == 0


def test_queued_faults_can_wait_for_a_method(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        proxy.inject("503", methods=["PUT"])
        proxy.inject("500")
        assert _fetch(proxy.url, "GET") == ("status", 500)  # the PUT-only fault waits
        assert _fetch(proxy.url, "HEAD") == ("ok", len(PAYLOAD))
        assert _fetch(proxy.url, "PUT") == ("status", 503)
        assert proxy.history == [("GET /obj", "500"), ("HEAD /obj", None), ("PUT /obj", "503")]


def test_random_faults_hit_only_the_methods_named_per_kind(upstream: str) -> None:
    with FaultProxy(
        upstream,
        failure_rate=1.0,
        faults=["503", "truncate"],
        methods=["GET", "HEAD", "PUT"],
        fault_methods={"truncate": ["GET"]},
        seed=1,
    ) as proxy:
        for method in ("GET", "HEAD", "PUT") * 10:
            _fetch(proxy.url, method)
        served = {(line.split()[0], fault) for line, fault in proxy.history}
        assert served == {("GET", "503"), ("GET", "truncate"), ("HEAD", "503"), ("PUT", "503")}


def test_truncate_on_an_answer_without_body_is_served_and_counted_as_500(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        proxy.inject("truncate", "truncate")
        assert _fetch(proxy.url, "HEAD") == ("status", 500)
        assert _fetch(proxy.url, "PUT") == ("status", 500)
        assert (proxy.stats()["truncate"], proxy.stats()["500"]) == (0, 2)
        assert [fault for _line, fault in proxy.history] == ["500", "500"]


def test_silent_fault_on_a_head_passes_untouched_and_uncounted(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        proxy.inject("flip", "short")
        assert _fetch(proxy.url, "HEAD") == ("ok", len(PAYLOAD))
        # The HEAD used up the flip; the GET gets the next queued fault.
        assert _fetch(proxy.url, "GET") == ("ok", PAYLOAD[: len(PAYLOAD) // 2])
        assert (proxy.stats()["flip"], proxy.stats()["short"], proxy.injected) == (0, 1, 1)
        assert proxy.history == [("HEAD /obj", None), ("GET /obj", "short")]


def test_proxy_rejects_bad_method_arguments(upstream: str) -> None:
    with pytest.raises(ValueError, match="fault_methods"):
        FaultProxy(upstream, faults=["503"], fault_methods={"truncate": ["GET"]})
    with pytest.raises(TypeError, match="methods"):
        FaultProxy(upstream, methods="GET")
    with pytest.raises(ValueError, match="methods"):
        FaultProxy(upstream).inject("503", methods=[])
