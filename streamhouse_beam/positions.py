"""Where a read starts and where it stops: :class:`StartPosition` and :class:`StopPosition`.

Both are immutable policies that are *resolved* per partition at run time, on the worker,
against a :class:`PartitionView` (the reader's view of one partition: earliest offset,
readable end, offset for a timestamp, the group's committed offset). They never do I/O
themselves, so they are cheap to build on the launcher and to pickle.

Start positions (the first offset to read):

=======================================  =========================================================
``StartPosition.earliest()``             the partition's earliest readable offset
``StartPosition.latest()``               the readable end at resolution time (only new records)
``StartPosition.committed(group, …)``    the group's committed offset (the next offset to read);
                                         ``fallback`` ("earliest" | "latest" | "fail") when the
                                         group has none for the partition
``StartPosition.offsets({…}, …)``        explicit offsets keyed by partition number or by
                                         ``(topic, partition)``; ``default`` for the others
``StartPosition.timestamp(ms)``          the first record whose timestamp is ``>= ms``
=======================================  =========================================================

A resolved start below the earliest readable offset is raised to it: the offsets before were
removed by retention (this is Kafka's ``auto.offset.reset=earliest`` for out-of-range offsets).

Stop positions (exclusive: the first offset *not* read):

=======================================  =========================================================
``None`` (no stop)                       unbounded: tail the partition until the pipeline stops
``StopPosition.latest()``                the readable end when the partition's read is planned
``StopPosition.offsets({…}, default=…)`` explicit exclusive stop offsets; ``default``
                                         ("latest" | "unbounded") for unlisted partitions
``StopPosition.timestamp(ms)``           before the first record whose timestamp is ``>= ms``;
                                         when no such record is readable yet the read tails the
                                         partition until one appears, or until it is caught up
                                         and its idle watermark (now - max delay) passes ``ms``
=======================================  =========================================================

The command line and the Beam YAML provider spell positions as text (``earliest``,
``offset:N``, ``committed:GROUP``...): :meth:`StartPosition.parse` and
:meth:`StopPosition.parse` are the one reading of that text (:data:`START_TEXTS`,
:data:`STOP_TEXTS`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Literal, Protocol

# NoCommittedOffsetError lives in the errors tree; it is importable from here as before.
from streamhouse_beam.errors import NoCommittedOffsetError
from streamhouse_beam.records import TopicPartition

__all__ = [
    "START_TEXTS",
    "STOP_TEXTS",
    "NoCommittedOffsetError",
    "PartitionView",
    "ResolvedStop",
    "StartPosition",
    "StopPosition",
]

StartKind = Literal["earliest", "latest", "committed", "offsets", "timestamp"]
StopKind = Literal["latest", "offsets", "timestamp"]
Fallback = Literal["earliest", "latest", "fail"]

_U63 = (1 << 63) - 1

#: The text forms :meth:`StartPosition.parse` reads.
START_TEXTS = ("earliest", "latest", "offset:N", "timestamp:MS", "committed:GROUP")
#: The text forms :meth:`StopPosition.parse` reads.
STOP_TEXTS = ("latest", "offset:N", "timestamp:MS")


class PartitionView(Protocol):
    """What positions need to know about one partition (implemented by the read path)."""

    def earliest_offset(self) -> int:
        """The first readable offset (the readable end when the partition is empty)."""

    def readable_end(self) -> int:
        """One past the last readable offset."""

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        """The first offset whose record timestamp is ``>= timestamp_ms``, else the readable end."""

    def committed_offset(self, group_id: str) -> int | None:
        """The group's committed (next-to-read) offset, or None."""


def _check_offset(arg: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{arg} must be an int offset, got {type(value).__name__} {value!r}")
    if not 0 <= value <= _U63:
        raise ValueError(f"{arg} must be in [0, 2**63-1], got {value!r}")
    return value


def _check_timestamp(arg: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{arg} must be an int (milliseconds since the epoch), got {type(value).__name__} "
            f"{value!r}"
        )
    if not 0 <= value <= _U63:
        raise ValueError(f"{arg} must be a non-negative millisecond timestamp, got {value!r}")
    return value


def _split_text(name: str, text: object) -> tuple[str, str]:
    """``text`` cut at its first colon: ``("committed", "GROUP")``, ``("latest", "")``."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__} {text!r}")
    kind, _, argument = text.partition(":")
    return kind, argument


def _is_number(argument: str) -> bool:
    # ASCII digits only: int() would also take "+5", " 5", "1_000" and other scripts' digits.
    return argument.isascii() and argument.isdigit()


def _not_a_form(name: str, text: str, forms: tuple[str, ...]) -> ValueError:
    return ValueError(f"{name} {text!r} is not {', '.join(forms[:-1])} or {forms[-1]}")


# Offsets are stored sorted as ((topic or "", partition), offset) so equal maps compare and
# pickle identically; "" means "any topic" (keyed by partition number only).
_OffsetItems = tuple[tuple[tuple[str, int], int], ...]


def _normalize_offsets(arg: str, offsets: object) -> _OffsetItems:
    if not isinstance(offsets, Mapping):
        raise TypeError(
            f"{arg} must be a mapping of partition or (topic, partition) to offset, got "
            f"{type(offsets).__name__}"
        )
    items: dict[tuple[str, int], int] = {}
    for key, offset in offsets.items():
        if isinstance(key, bool):
            raise TypeError(f"{arg} key {key!r} is not a partition number or (topic, partition)")
        if isinstance(key, int):
            topic, partition = "", key
        elif (
            isinstance(key, tuple)
            and len(key) == 2
            and isinstance(key[0], str)
            and isinstance(key[1], int)
            and not isinstance(key[1], bool)
        ):
            topic, partition = key[0], key[1]
            if not topic:
                raise ValueError(f"{arg} key {key!r} has an empty topic name")
        else:
            raise TypeError(f"{arg} key {key!r} is not a partition number or (topic, partition)")
        if partition < 0:
            raise ValueError(f"{arg} key {key!r} has a negative partition")
        items[(topic, partition)] = _check_offset(f"{arg}[{key!r}]", offset)
    return tuple(sorted(items.items()))


def _lookup(items: _OffsetItems, tp: TopicPartition) -> int | None:
    exact = generic = None
    for (topic, partition), offset in items:
        if partition != tp.partition:
            continue
        if topic == tp.topic:
            exact = offset
        elif topic == "":
            generic = offset
    return exact if exact is not None else generic


@dataclasses.dataclass(frozen=True)
class StartPosition:
    """The first offset to read in each partition. Build with the class methods."""

    kind: StartKind
    group_id: str | None = None
    #: Where a partition without a committed or listed offset starts (an int: that offset).
    fallback: Fallback | int = "earliest"
    offsets_by_partition: _OffsetItems = ()
    timestamp_ms: int | None = None

    @classmethod
    def earliest(cls) -> StartPosition:
        """Start at each partition's earliest readable offset."""
        return cls("earliest")

    @classmethod
    def latest(cls) -> StartPosition:
        """Start at the readable end: read only records that become readable later."""
        return cls("latest")

    @classmethod
    def committed(cls, group_id: str, fallback: Fallback = "earliest") -> StartPosition:
        """Resume from the offsets consumer group ``group_id`` committed.

        Args:
            group_id: the consumer group whose ``consumer_offsets`` rows are read.
            fallback: what to do for a partition without a committed offset: ``"earliest"``
                (default, like a new Kafka consumer with ``auto.offset.reset=earliest``),
                ``"latest"``, or ``"fail"`` (raise :class:`NoCommittedOffsetError`).
        """
        if not isinstance(group_id, str) or not group_id:
            raise ValueError(f"group_id must be a non-empty string, got {group_id!r}")
        if fallback not in ("earliest", "latest", "fail"):
            raise ValueError(f"fallback must be 'earliest', 'latest' or 'fail', got {fallback!r}")
        return cls("committed", group_id=group_id, fallback=fallback)

    @classmethod
    def offsets(
        cls,
        offsets: Mapping[int | tuple[str, int], int],
        default: Fallback | int = "earliest",
    ) -> StartPosition:
        """Start at explicit offsets.

        Args:
            offsets: ``{partition: offset}`` (any topic) or ``{(topic, partition): offset}``;
                a ``(topic, partition)`` key wins over a bare partition key.
            default: start of partitions not listed: ``"earliest"``, ``"latest"``,
                ``"fail"`` (raise ValueError when such a partition is read) or an offset
                (``offsets({}, default=n)`` starts every partition at ``n``).
        """
        if isinstance(default, int) and not isinstance(default, bool):
            default = _check_offset("default", default)
        elif default not in ("earliest", "latest", "fail"):
            raise ValueError(
                f"default must be 'earliest', 'latest', 'fail' or an offset, got {default!r}"
            )
        return cls(
            "offsets", fallback=default, offsets_by_partition=_normalize_offsets("offsets", offsets)
        )

    @classmethod
    def timestamp(cls, timestamp_ms: int) -> StartPosition:
        """Start at the first record whose timestamp (ms since the epoch) is ``>= timestamp_ms``."""
        return cls("timestamp", timestamp_ms=_check_timestamp("timestamp_ms", timestamp_ms))

    @classmethod
    def parse(cls, text: str, *, name: str = "start") -> StartPosition:
        """The start a command-line or YAML string names (:data:`START_TEXTS`).

        =====================  ===================================================
        ``earliest``           :meth:`earliest`
        ``latest``             :meth:`latest`
        ``offset:N``           every partition from offset ``N``:
                               ``offsets({}, default=N)``
        ``timestamp:MS``       :meth:`timestamp` (milliseconds since the epoch)
        ``committed:GROUP``    :meth:`committed` (``GROUP`` is everything after the
                               first colon), falling back to earliest
        =====================  ===================================================

        Args:
            text: one of the forms above, exactly (no spaces, lower case).
            name: what ``text`` was given as (``"--start"``), for the error message.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is none of the forms, or its number is out of range.
        """
        kind, argument = _split_text(name, text)
        try:
            if text == "earliest":
                return cls.earliest()
            if text == "latest":
                return cls.latest()
            if kind == "committed" and argument:
                return cls.committed(argument)
            if kind == "offset" and _is_number(argument):
                return cls.offsets({}, default=int(argument))
            if kind == "timestamp" and _is_number(argument):
                return cls.timestamp(int(argument))
        except ValueError as exc:
            raise ValueError(f"{name} {text!r}: {exc}") from None
        raise _not_a_form(name, text, START_TEXTS)

    def resolve(self, tp: TopicPartition, view: PartitionView) -> int:
        """The first offset to read in ``tp``.

        Raises:
            NoCommittedOffsetError: ``committed(..., fallback="fail")`` without a commit.
            ValueError: ``offsets(..., default="fail")`` and ``tp`` is not listed.
        """
        offset: int | None
        fallback = self.fallback
        if self.kind == "earliest":
            offset = view.earliest_offset()
        elif self.kind == "latest":
            offset = view.readable_end()
        elif self.kind == "timestamp":
            assert self.timestamp_ms is not None
            offset = view.offset_for_timestamp(self.timestamp_ms)
        elif self.kind == "committed":
            assert self.group_id is not None
            offset = view.committed_offset(self.group_id)
            if offset is None and fallback == "fail":
                raise NoCommittedOffsetError(self.group_id, tp)
        else:
            offset = _lookup(self.offsets_by_partition, tp)
            if offset is None and fallback == "fail":
                raise ValueError(
                    f"StartPosition.offsets has no offset for topic {tp.topic!r} partition "
                    f"{tp.partition} and default='fail'"
                )
        if offset is None:
            if isinstance(fallback, int):
                offset = fallback
            elif fallback == "earliest":
                offset = view.earliest_offset()
            else:
                offset = view.readable_end()
        # Offsets below the earliest readable one were removed by retention.
        return max(offset, view.earliest_offset())

    def describe(self) -> str:
        """A short human-readable form for display data and logs."""
        if self.kind == "committed":
            return f"committed({self.group_id!r}, fallback={self.fallback!r})"
        if self.kind == "offsets":
            shown = {(f"{t}/{p}" if t else p): o for (t, p), o in self.offsets_by_partition}
            return f"offsets({shown}, default={self.fallback!r})"
        if self.kind == "timestamp":
            return f"timestamp({self.timestamp_ms})"
        return f"{self.kind}()"


@dataclasses.dataclass(frozen=True)
class ResolvedStop:
    """A stop resolved for one partition.

    Attributes:
        offset: exclusive stop offset, or ``None`` for an open-ended (tailing) read.
        timestamp_ms: for an open-ended read that must end at the first record whose
            timestamp is ``>= timestamp_ms``; else ``None``.
    """

    offset: int | None
    timestamp_ms: int | None = None

    @property
    def bounded(self) -> bool:
        return self.offset is not None


@dataclasses.dataclass(frozen=True)
class StopPosition:
    """Where each partition's read ends (exclusive). Build with the class methods."""

    kind: StopKind
    offsets_by_partition: _OffsetItems = ()
    #: The stop of partitions ``offsets`` does not list (an int: that offset).
    default: Literal["latest", "unbounded"] | int = "latest"
    timestamp_ms: int | None = None

    @classmethod
    def latest(cls) -> StopPosition:
        """Stop at the readable end as seen when the partition's read is planned."""
        return cls("latest")

    @classmethod
    def offsets(
        cls,
        offsets: Mapping[int | tuple[str, int], int],
        default: Literal["latest", "unbounded"] | int = "latest",
    ) -> StopPosition:
        """Stop before explicit offsets (exclusive).

        Args:
            offsets: ``{partition: stop}`` or ``{(topic, partition): stop}``. A stop beyond the
                readable end waits for the records to arrive.
            default: for unlisted partitions, ``"latest"``, ``"unbounded"`` (tail them) or an
                offset (``offsets({}, default=n)`` stops every partition before ``n``).
        """
        if isinstance(default, int) and not isinstance(default, bool):
            default = _check_offset("default", default)
        elif default not in ("latest", "unbounded"):
            raise ValueError(f"default must be 'latest', 'unbounded' or an offset, got {default!r}")
        return cls(
            "offsets", offsets_by_partition=_normalize_offsets("offsets", offsets), default=default
        )

    @classmethod
    def timestamp(cls, timestamp_ms: int) -> StopPosition:
        """Stop before the first record whose timestamp is ``>= timestamp_ms``."""
        return cls("timestamp", timestamp_ms=_check_timestamp("timestamp_ms", timestamp_ms))

    @classmethod
    def parse(cls, text: str, *, name: str = "stop") -> StopPosition:
        """The stop a command-line or YAML string names (:data:`STOP_TEXTS`).

        =====================  ===================================================
        ``latest``             :meth:`latest`
        ``offset:N``           every partition before offset ``N``:
                               ``offsets({}, default=N)``
        ``timestamp:MS``       :meth:`timestamp` (milliseconds since the epoch)
        =====================  ===================================================

        No text means no stop (a tailing read): callers map their "not given" to ``None``.

        Args:
            text: one of the forms above, exactly (no spaces, lower case).
            name: what ``text`` was given as (``"--stop"``), for the error message.

        Raises:
            TypeError: ``text`` is not a str.
            ValueError: ``text`` is none of the forms, or its number is out of range.
        """
        kind, argument = _split_text(name, text)
        try:
            if text == "latest":
                return cls.latest()
            if kind == "offset" and _is_number(argument):
                return cls.offsets({}, default=int(argument))
            if kind == "timestamp" and _is_number(argument):
                return cls.timestamp(int(argument))
        except ValueError as exc:
            raise ValueError(f"{name} {text!r}: {exc}") from None
        raise _not_a_form(name, text, STOP_TEXTS)

    def resolve(self, tp: TopicPartition, view: PartitionView, start: int) -> ResolvedStop:
        """The stop for ``tp`` given the resolved ``start`` (never below it)."""
        if self.kind == "latest":
            return ResolvedStop(max(start, view.readable_end()))
        if self.kind == "offsets":
            offset = _lookup(self.offsets_by_partition, tp)
            if offset is None:
                if isinstance(self.default, int):
                    return ResolvedStop(max(start, self.default))
                if self.default == "unbounded":
                    return ResolvedStop(None)
                return ResolvedStop(max(start, view.readable_end()))
            return ResolvedStop(max(start, offset))
        assert self.timestamp_ms is not None
        end = view.readable_end()
        offset = view.offset_for_timestamp(self.timestamp_ms)
        if offset < end:
            return ResolvedStop(max(start, offset))
        # No readable record has reached the timestamp yet: tail until one does.
        return ResolvedStop(None, timestamp_ms=self.timestamp_ms)

    def describe(self) -> str:
        """A short human-readable form for display data and logs."""
        if self.kind == "offsets":
            shown = {(f"{t}/{p}" if t else p): o for (t, p), o in self.offsets_by_partition}
            return f"offsets({shown}, default={self.default!r})"
        if self.kind == "timestamp":
            return f"timestamp({self.timestamp_ms})"
        return "latest()"
