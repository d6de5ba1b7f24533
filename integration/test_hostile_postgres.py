"""SQL metacharacters against PostgreSQL: names are parameters, never SQL text.

The SQLite side lives in ``tests/test_hostile_input.py``; PostgreSQL gets its own check because
its driver uses ``%s`` placeholders, so a ``%`` or ``?`` in a name must not be mistaken for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from streamhouse_beam.errors import OrganizationError, TopicNotFoundError
from streamhouse_beam.metadata import open_metadata
from streamhouse_beam.records import TopicPartition
from streamhouse_beam.storage.memory import MemoryStore
from streamhouse_beam.testing.local import LocalStreamHouse

NAMES = [
    "x'; DROP TABLE segments; --",
    "a' OR '1'='1",
    "%s",
    "%(name)s",
    "?",
    "$1",
    "%",
    "_",
    'quote"d',
    "back\\slash",
    "événements 🚀",
    "-- comment",
]

pytestmark = pytest.mark.postgres


@pytest.fixture
def house(postgres_server: Any, postgres_url: str) -> Iterator[LocalStreamHouse]:
    with LocalStreamHouse(postgres_url, MemoryStore("hostile-pg")) as lsh:
        lsh.create_schema()
        lsh.create_topic("plain", partitions=1)
        lsh.append("plain", 0, [b"p0", b"p1"], flush=True)
        yield lsh


def test_hostile_names_are_parameters_on_postgres(house: LocalStreamHouse) -> None:
    for i, name in enumerate(NAMES):
        house.create_topic(name, partitions=1)
        house.append(name, 0, [f"{i}".encode()] * (i + 1), flush=True)
    store = house.metadata()
    assert sorted(t.name for t in store.list_topics()) == sorted([*NAMES, "plain"])
    for i, name in enumerate(NAMES):
        assert store.partition(name, 0).high_watermark == i + 1, name
        assert [s.topic for s in store.segments(name, 0)] == [name]
    for pattern in ("pl%", "pla_n", "' OR ''='"):
        with pytest.raises(TopicNotFoundError):
            store.get_topic(pattern)
    tp = TopicPartition("plain", 0)
    for i, group in enumerate(NAMES):
        store.commit_offsets(group, {tp: 10 + i}, metadata=group)
    assert [store.committed_offset(g, "plain", 0) for g in NAMES] == [
        10 + i for i in range(len(NAMES))
    ]
    assert store.committed_offset("pl%", "plain", 0) is None
    store.close()


@pytest.mark.parametrize("org", ["x' OR '1'='1", "%s", "00000000-0000-0000-0000-000000000000"])
def test_hostile_or_unknown_organization_sees_nothing(house: LocalStreamHouse, org: str) -> None:
    # A non-UUID id is refused when the store is opened; an unknown UUID when it is used.
    with pytest.raises((OrganizationError, TopicNotFoundError)):
        store = open_metadata(house.metadata_url, org)
        try:
            store.get_topic("plain")
        finally:
            store.close()
    assert [t.name for t in house.metadata().list_topics()] == ["plain"]
