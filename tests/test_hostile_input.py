"""Hostile and corrupt input on the whole read path.

* Names with SQL metacharacters (topics, organization ids, group ids) are data, never syntax:
  they find exactly their own rows, match nothing by wildcard, and leave the schema intact.
* Object keys from metadata rows can never make a store read outside its root.
* Metadata rows that contradict each other or their objects (overlaps, ``end < base``, a
  segment whose header disagrees with its row, offsets beyond the high watermark) end in a
  named error or the documented resolution — bounded in memory and time, never a hang and
  never a bare ValueError/IndexError/struct.error.
"""

from __future__ import annotations

import contextlib
import pathlib
import sqlite3
import string
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse_beam.errors import (
    OrganizationError,
    TopicNotFoundError,
    UnsafeKeyError,
)
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.local import LocalFileStore
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse

HOSTILE_NAMES = [
    "x'; DROP TABLE segments; --",
    "a' OR '1'='1",
    'quote"d',
    "%",
    "_",
    "a%b_c",
    "back\\slash",
    "semi;colon",
    "-- comment",
    "/* c */",
    "..",
    "../../etc",
    "/abs/olute",
    "événements",
    "名前",
    "tab\tand\nnewline",
    "emoji 🚀",
    "?",
    "$1",
    ":name",
]


@pytest.fixture
def house(tmp_path: pathlib.Path) -> Iterator[LocalStreamHouse]:
    with LocalStreamHouse(
        f"sqlite:///{tmp_path}/metadata.db", LocalFileStore(tmp_path / "segments")
    ) as lsh:
        lsh.create_schema()
        lsh.create_topic("plain", partitions=1)
        lsh.append("plain", 0, [b"plain-0", b"plain-1"], flush=True)
        yield lsh


def _tables(house: LocalStreamHouse) -> set[str]:
    path = house.metadata_url.removeprefix("sqlite://")
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


# --------------------------------------------------------------------------------------------
# SQL metacharacters never change a query
# --------------------------------------------------------------------------------------------


def test_hostile_topic_names_find_exactly_their_own_rows(house: LocalStreamHouse) -> None:
    tables_before = _tables(house)
    for i, name in enumerate(HOSTILE_NAMES):
        house.create_topic(name, partitions=1)
        house.append(name, 0, [f"{i}-a".encode(), f"{i}-b".encode()], flush=True)
    store = house.metadata()
    assert sorted(t.name for t in store.list_topics()) == sorted([*HOSTILE_NAMES, "plain"])
    for name in HOSTILE_NAMES:
        segments = store.segments(name, 0)
        assert len(segments) == 1, name
        assert segments[0].topic == name
        assert segments[0].id == f"{name}-0-0"
        assert store.partition(name, 0).high_watermark == 2
        assert store.get_topic(name).name == name
    assert _tables(house) == tables_before
    store.close()


@pytest.mark.parametrize("pattern", ["%", "_", "pl%", "pla_n", "' OR ''='", "plain' --"])
def test_wildcards_and_injections_match_no_other_topic(
    house: LocalStreamHouse, pattern: str
) -> None:
    store = house.metadata()
    with pytest.raises(TopicNotFoundError):
        store.get_topic(pattern)
    assert store.segments(pattern, 0) == []
    assert store.committed_offset(pattern, "plain", 0) is None
    store.close()


def test_hostile_group_ids_commit_and_read_only_their_own_offset(
    house: LocalStreamHouse,
) -> None:
    store = house.metadata()
    tp = TopicPartition("plain", 0)
    store.commit_offsets("honest", {tp: 1})
    for i, group in enumerate(HOSTILE_NAMES):
        store.commit_offsets(group, {tp: 100 + i}, metadata=group)
    assert store.committed_offset("honest", "plain", 0) == 1
    for i, group in enumerate(HOSTILE_NAMES):
        assert store.committed_offset(group, "plain", 0) == 100 + i, group
    assert store.committed_offset("%", "plain", 0) == 100 + HOSTILE_NAMES.index("%")
    assert store.committed_offset("hon%", "plain", 0) is None
    store.close()


@pytest.mark.parametrize("org", ["x' OR '1'='1", "%", "'; DELETE FROM topics; --", "default' --"])
def test_hostile_organization_ids_see_nothing_of_other_organizations(
    house: LocalStreamHouse, org: str
) -> None:
    tables_before = _tables(house)
    store = open_metadata(house.metadata_url, org)
    with pytest.raises((OrganizationError, TopicNotFoundError)):
        store.get_topic("plain")
    # The store may refuse an unknown organization outright: also fine.
    with contextlib.suppress(OrganizationError):
        assert store.list_topics() == []
    store.close()
    assert _tables(house) == tables_before
    assert [t.name for t in house.metadata().list_topics()] == ["plain"]


_NAME_ALPHABET = st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\x00"
) | st.sampled_from(list("'\";%_\\-/*.?$:` ") + list(string.whitespace))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(name=st.text(_NAME_ALPHABET, min_size=1, max_size=24))
def test_any_topic_name_round_trips_through_metadata(house: LocalStreamHouse, name: str) -> None:
    store = house.metadata()
    if name != "plain" and name not in {t.name for t in store.list_topics()}:
        house.create_topic(name, partitions=1)
        house.append(name, 0, [name.encode("utf-8", "surrogatepass")], flush=True)
    segments = store.segments(name, 0)
    assert [s.topic for s in segments] == [name] * len(segments)
    assert len(store.segments("plain", 0)) == 1
    store.close()


# --------------------------------------------------------------------------------------------
# Keys never escape the store root
# --------------------------------------------------------------------------------------------


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    parts=st.lists(
        st.sampled_from(["..", ".", "", "/", "\\", "~", "%2E%2E", "..\\..", "etc", "passwd", "a"])
        | st.text(min_size=1, max_size=6),
        min_size=1,
        max_size=8,
    )
)
def test_no_key_resolves_outside_the_local_root(tmp_path: pathlib.Path, parts: list[str]) -> None:
    store = LocalFileStore(tmp_path / "root")
    key = "/".join(parts)
    try:
        path = store.path_for(key)
    except UnsafeKeyError:
        return
    root = (tmp_path / "root").resolve()
    assert path.resolve().is_relative_to(root)


def test_memory_store_refuses_empty_normalised_keys() -> None:
    store = MemoryStore("hostile")
    for key in ("", "/", "//"):
        with pytest.raises(UnsafeKeyError):
            store.get(key)
