"""The behaviour every ObjectStore backend must show, written once and run against each.

A test module subclasses :class:`StoreContract` and provides these fixtures:

``store``
    a fresh, empty-ish :class:`ObjectStore` whose default bucket is ``bucket_name``.
``raw_names``
    ``raw_names(bucket: str | None) -> list[str]``: the object names really present in a
    bucket (default: the store's own), read with the raw client or the filesystem, sorted.
``other_bucket``
    a second bucket name that exists, or ``None`` when the backend has no buckets (file).
``secret``
    a credential string that must never show up in repr/str/url/errors, or ``None``.

Imported as ``tests.storage_contract`` from tests/ and integration/.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest

from streamhouse_beam.errors import ObjectNotFoundError, StorageError, UnsafeKeyError
from streamhouse_beam.storage.base import ObjectStore
from streamhouse_beam.storage.keys import encode_key

RawNames = Callable[..., list[str]]

# Raw segment keys a hostile topic name can produce, and what object_store names them.
HOSTILE_KEYS: list[tuple[str, str]] = [
    (
        "org-1/data/événements/0/00000000000000000000.seg",
        "org-1/data/%C3%A9v%C3%A9nements/0/00000000000000000000.seg",
    ),
    ("data/100%/0/00000000000000000007.seg", "data/100%25/0/00000000000000000007.seg"),
    ("data/a#b/1/x.seg", "data/a%23b/1/x.seg"),
    ("data/with space/2/x.seg", "data/with space/2/x.seg"),
    ("data/../3/x.seg", "data/%2E%2E/3/x.seg"),
    ("data/./4/x.seg", "data/%2E/4/x.seg"),
    ("../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
    ("/abs/olute//key/", "abs/olute/key"),
    ('data/q"{^}[]~<>|*?`\\/0/x.seg', "data/q%22%7B%5E%7D%5B%5D%7E%3C%3E%7C%2A%3F%60%5C/0/x.seg"),
    ("data/日本/0/x.seg", "data/%E6%97%A5%E6%9C%AC/0/x.seg"),
    ("data/tab\there/0/x.seg", "data/tab%09here/0/x.seg"),
    ("data/...'s+=,;@!$&()/0/x.seg", "data/...'s+=,;@!$&()/0/x.seg"),
]

PAYLOAD = bytes(range(256)) * 40 + b"tail-end"


class StoreContract:
    """Mix into a test class that provides the fixtures named in the module docstring."""

    # ------------------------------------------------------------------ whole objects

    def test_put_then_get_returns_the_same_bytes(self, store: ObjectStore) -> None:
        store.put("data/t/0/00000000000000000000.seg", PAYLOAD)
        assert store.get("data/t/0/00000000000000000000.seg") == PAYLOAD

    def test_put_overwrites_an_existing_object(self, store: ObjectStore) -> None:
        store.put("data/t/0/x.seg", b"first version")
        store.put("data/t/0/x.seg", b"second")
        assert store.get("data/t/0/x.seg") == b"second"

    def test_empty_object_round_trips(self, store: ObjectStore) -> None:
        store.put("data/t/0/empty.seg", b"")
        assert store.get("data/t/0/empty.seg") == b""
        assert store.size("data/t/0/empty.seg") == 0
        assert store.get_suffix("data/t/0/empty.seg", 32) == b""
        assert store.get_range("data/t/0/empty.seg", 0, 64) == b""

    def test_size_reports_object_length(self, store: ObjectStore) -> None:
        store.put("data/t/0/x.seg", PAYLOAD)
        assert store.size("data/t/0/x.seg") == len(PAYLOAD)

    # ------------------------------------------------------------------ ranges

    def test_get_range_returns_half_open_slice(self, store: ObjectStore) -> None:
        store.put("k", PAYLOAD)
        assert store.get_range("k", 0, 64) == PAYLOAD[:64]
        assert store.get_range("k", 100, 1000) == PAYLOAD[100:1000]
        assert store.get_range("k", len(PAYLOAD) - 1, len(PAYLOAD)) == PAYLOAD[-1:]

    def test_get_range_past_the_end_returns_what_exists(self, store: ObjectStore) -> None:
        store.put("k", PAYLOAD)
        assert store.get_range("k", len(PAYLOAD) - 5, len(PAYLOAD) + 100) == PAYLOAD[-5:]
        assert store.get_range("k", len(PAYLOAD), len(PAYLOAD) + 10) == b""
        assert store.get_range("k", len(PAYLOAD) + 50, len(PAYLOAD) + 60) == b""

    def test_empty_range_returns_no_bytes(self, store: ObjectStore) -> None:
        store.put("k", PAYLOAD)
        assert store.get_range("k", 10, 10) == b""

    def test_get_suffix_returns_the_tail(self, store: ObjectStore) -> None:
        store.put("k", PAYLOAD)
        assert store.get_suffix("k", 32) == PAYLOAD[-32:]
        assert store.get_suffix("k", 1) == PAYLOAD[-1:]

    def test_get_suffix_longer_than_object_returns_all_of_it(self, store: ObjectStore) -> None:
        store.put("k", b"short")
        assert store.get_suffix("k", 1000) == b"short"
        assert store.get_suffix("k", 0) == b""

    def test_negative_or_inverted_ranges_are_argument_errors(self, store: ObjectStore) -> None:
        store.put("k", b"abc")
        with pytest.raises(ValueError, match="start"):
            store.get_range("k", -1, 2)
        with pytest.raises(ValueError, match="end"):
            store.get_range("k", 2, 1)
        with pytest.raises(ValueError, match="length"):
            store.get_suffix("k", -1)

    # ------------------------------------------------------------------ missing objects

    @pytest.mark.parametrize("operation", ["get", "get_range", "get_suffix", "size"])
    def test_missing_object_raises_not_found_carrying_the_key(
        self, store: ObjectStore, operation: str
    ) -> None:
        key = "data/missing topic/0/00000000000000000042.seg"
        calls = {
            "get": lambda: store.get(key),
            "get_range": lambda: store.get_range(key, 0, 10),
            "get_suffix": lambda: store.get_suffix(key, 10),
            "size": lambda: store.size(key),
        }
        with pytest.raises(ObjectNotFoundError) as info:
            calls[operation]()
        assert info.value.key == key
        assert key in str(info.value)

    def test_missing_object_with_empty_range_still_raises_not_found(
        self, store: ObjectStore
    ) -> None:
        with pytest.raises(ObjectNotFoundError):
            store.get_range("nope", 5, 5)
        with pytest.raises(ObjectNotFoundError):
            store.get_suffix("nope", 0)

    def test_exists_reflects_put_and_delete(self, store: ObjectStore) -> None:
        assert not store.exists("a/b")
        store.put("a/b", b"x")
        assert store.exists("a/b")
        store.delete("a/b")
        assert not store.exists("a/b")
        with pytest.raises(ObjectNotFoundError):
            store.get("a/b")

    def test_deleting_a_missing_object_is_not_an_error(self, store: ObjectStore) -> None:
        store.delete("never/was/there")

    # ------------------------------------------------------------------ key encoding

    @pytest.mark.parametrize(("key", "object_name"), HOSTILE_KEYS)
    def test_hostile_key_round_trips_and_lands_at_the_encoded_name(
        self, store: ObjectStore, raw_names: RawNames, key: str, object_name: str
    ) -> None:
        assert encode_key(key) == object_name
        store.put(key, b"payload:" + key.encode())
        assert raw_names() == [object_name]
        assert store.get(key) == b"payload:" + key.encode()
        assert store.get_range(key, 0, 8) == b"payload:"
        assert store.size(key) == 8 + len(key.encode())
        store.delete(key)
        assert raw_names() == []

    def test_empty_parts_collapse_to_the_same_object(
        self, store: ObjectStore, raw_names: RawNames
    ) -> None:
        store.put("a//b///c.seg", b"x")
        assert raw_names() == ["a/b/c.seg"]
        assert store.get("/a/b/c.seg/") == b"x"
        assert store.get("a/b/c.seg") == b"x"

    @pytest.mark.parametrize("key", ["", "/", "//", "///"])
    def test_key_without_parts_is_refused(self, store: ObjectStore, key: str) -> None:
        with pytest.raises(UnsafeKeyError):
            store.put(key, b"x")
        with pytest.raises(UnsafeKeyError):
            store.get(key)

    # ------------------------------------------------------------------ buckets

    def test_the_url_bucket_wins_over_the_row_bucket(
        self, store: ObjectStore, raw_names: RawNames, other_bucket: str | None
    ) -> None:
        # A store opened on a bucket (a replica, a renamed bucket) reads that bucket whatever
        # the segment row recorded; bucket-less backends (file) ignore the row's bucket, like
        # StreamHouse's local mode.
        row_bucket = other_bucket or "whatever-the-row-says"
        store.put("data/t/0/x.seg", b"in url bucket", bucket=row_bucket)
        assert raw_names() == ["data/t/0/x.seg"]
        if other_bucket is not None:
            assert raw_names(other_bucket) == []
        assert store.get("data/t/0/x.seg", bucket=row_bucket) == b"in url bucket"
        assert store.get("data/t/0/x.seg") == b"in url bucket"
        assert store.get_range("data/t/0/x.seg", 3, 6, bucket=row_bucket) == b"url"
        assert store.get_suffix("data/t/0/x.seg", 6, bucket=row_bucket) == b"bucket"
        assert store.size("data/t/0/x.seg", bucket=row_bucket) == 13
        store.check_root(bucket=row_bucket)
        store.put("data/t/0/y.seg", b"empty row bucket", bucket="")
        assert raw_names() == ["data/t/0/x.seg", "data/t/0/y.seg"]
        store.delete("data/t/0/x.seg", bucket=row_bucket)
        assert raw_names() == ["data/t/0/y.seg"]
        with pytest.raises(ObjectNotFoundError) as info:
            store.get("data/t/0/x.seg", bucket=row_bucket)
        assert info.value.key == "data/t/0/x.seg"

    # ------------------------------------------------------------------ pickling, secrets

    def test_pickled_store_reads_the_same_objects(self, store: ObjectStore) -> None:
        store.put("data/t/0/p.seg", b"pickled")
        assert store.get("data/t/0/p.seg") == b"pickled"  # use it first: clients exist now
        copy = pickle.loads(pickle.dumps(store))
        assert copy.url == store.url
        assert copy.get("data/t/0/p.seg") == b"pickled"
        assert copy.get_suffix("data/t/0/p.seg", 3) == b"led"
        copy.put("data/t/0/q.seg", b"from copy")
        assert store.get("data/t/0/q.seg") == b"from copy"

    def test_close_keeps_the_store_usable(self, store: ObjectStore) -> None:
        store.put("k", b"v")
        store.close()
        assert store.get("k") == b"v"
        with store as same:
            assert same.size("k") == 1

    def test_credentials_never_appear_in_repr_url_or_errors(
        self, store: ObjectStore, secret: str | None
    ) -> None:
        texts = [repr(store), str(store), store.url]
        with pytest.raises(StorageError) as info:
            store.get("data/absent/0/x.seg")
        texts += [str(info.value), repr(info.value)]
        store.put("k", b"v")
        texts.append(repr(pickle.loads(pickle.dumps(store))))
        if secret is not None:
            for text in texts:
                assert secret not in text

    def test_retry_count_starts_at_zero(self, store: ObjectStore) -> None:
        store.put("k", b"v")
        store.get("k")
        assert store.retry_count == 0  # type: ignore[attr-defined]
        assert store.stats()["retries"] == 0  # type: ignore[attr-defined]
