"""Every exception streamhouse-beam raises, in one tree.

Callers catch the most specific class they can act on; everything derives from
:class:`StreamHouseError`, so ``except StreamHouseError`` catches all of it::

    StreamHouseError
    ├── MissingExtraError                 an optional dependency is not installed (also an ImportError; names the pip extra)
    ├── SegmentError                      bytes that are not a readable segment (object key, byte position)
    │   ├── CorruptSegmentError           the bytes contradict the format
    │   │   ├── TruncatedSegmentError     the data ends before a structure does
    │   │   ├── ChecksumMismatchError     CRC-32 over header+blocks+index differs from the footer
    │   │   └── SegmentLimitError         a declared size is above the configured limit (refused before allocating)
    │   └── UnsupportedSegmentError       a valid-looking segment this reader cannot decode (version, Zstd)
    ├── StorageError                      object store failures (object key, bucket)
    │   ├── ObjectNotFoundError           the object does not exist
    │   ├── StoragePermissionError        credentials were refused
    │   ├── TransientStorageError         throttling, 5xx, timeouts, resets: retried, raised once the budget is spent
    │   ├── StorageRootNotFoundError      the storage url's directory or bucket does not exist (configuration, never skipped)
    │   └── UnsafeKeyError                a key that would escape the store's root
    ├── MetadataError                     metadata store failures
    │   ├── MetadataUnavailableError      the database could not be reached / stayed locked past the retry budget
    │   ├── NotAStreamHouseStoreError     the database lacks a StreamHouse table or column
    │   ├── OrganizationError             no organization given and the store holds zero or several
    │   ├── TopicNotFoundError            the topic (or partition) does not exist in the organization
    │   └── InconsistentMetadataError     rows that contradict each other or their segment object
    ├── NoCommittedOffsetError            StartPosition.committed(group, fallback="fail") found no commit (group, partition)
    ├── DataLossError                     offsets that cannot be read any more (topic, partition, offset range)
    ├── DecodeError                       a record value the chosen decoder cannot decode (topic, partition, offset, raw bytes)
    ├── EventTimeError                    an EventTimePolicy.from_record function failed or returned no timestamp (topic, partition, offset)
    ├── SchemaRegistryError               a schema id the registry cannot provide
    ├── UnsupportedOnRunnerError          a read option the pipeline's runner cannot honour (refused when the pipeline is built)
    └── RunnerNotInstalledError           a runner binary or jar `make runners` caches is not there (also a FileNotFoundError)

Third-party exceptions (botocore, google-api-core, psycopg, sqlite3, lz4) are mapped to these
at the boundary where they occur with ``raise ... from exc``, so the cause stays attached.
Messages never contain credentials; :func:`redact` is applied to anything that may.

An error raised inside a pipeline reaches the caller of ``pipeline.run()`` (on in-process
runners) as the same object, so ``except NoCommittedOffsetError`` and the attributes work
there too (see :attr:`StreamHouseError._tagged_with_step`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamhouse_beam.records import TopicPartition

__all__ = [
    "ChecksumMismatchError",
    "CorruptSegmentError",
    "DataLossError",
    "DecodeError",
    "EventTimeError",
    "InconsistentMetadataError",
    "MetadataError",
    "MetadataUnavailableError",
    "MissingExtraError",
    "NoCommittedOffsetError",
    "NotAStreamHouseStoreError",
    "ObjectNotFoundError",
    "OrganizationError",
    "RunnerNotInstalledError",
    "SchemaRegistryError",
    "SegmentError",
    "SegmentLimitError",
    "StorageError",
    "StoragePermissionError",
    "StorageRootNotFoundError",
    "StreamHouseError",
    "TopicNotFoundError",
    "TransientStorageError",
    "TruncatedSegmentError",
    "UnsafeKeyError",
    "UnsupportedOnRunnerError",
    "UnsupportedSegmentError",
    "redact",
]

# user:password@ in URLs, and key=value style secrets in option strings, dict/JSON reprs
# ('password': 'x') and HTTP authorization headers (Authorization: Bearer x).
# The password part may hold '/' (common in AWS secret keys pasted unencoded): redacting a
# little too much of a URL is better than leaking the rest of a secret.
_URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^/@:\s]*):(?P<pw>[^@\s]*)@"
)
_KV_SECRET = re.compile(
    r"(?i)(?P<k>(?:password|passwd|pwd|secret|token|aws_secret_access_key|secret_access_key|"
    r"session_token|api_key|apikey|authorization)['\"]?\s*[=:]\s*['\"]?(?:(?:Bearer|Basic)\s+)?)"
    r"(?P<v>[^\s&,;'\"}]+)"
)


def redact(text: str) -> str:
    """Return ``text`` with passwords in URLs and ``secret=value`` pairs replaced by ``***``."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _KV_SECRET.sub(lambda m: f"{m['k']}***", text)


class StreamHouseError(Exception):
    """Base class of every error raised by streamhouse-beam."""

    #: Beam's DoFnRunner re-raises an exception from user code as
    #: ``type(exc)(message + " [while running 'step']")`` and, when that call fails (our
    #: errors take keyword fields such as ``topic=``), as a ``RuntimeError`` naming the type
    #: in its text, so ``except NoCommittedOffsetError`` would miss it and the fields would be
    #: lost. Beam re-raises an exception that says it is already tagged unchanged; ours
    #: already name what and where, so they say so.
    _tagged_with_step = True

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))

    def __reduce__(self) -> tuple[Any, ...]:
        # Beam ships exceptions between processes; keep the fields on unpickling.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(
    cls: type[StreamHouseError], args: tuple[Any, ...], state: dict[str, Any]
) -> StreamHouseError:
    # The class's own __new__: Exception.__new__ refuses OSError subclasses.
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class MissingExtraError(StreamHouseError, ImportError):
    """An optional dependency of the feature asked for is not installed.

    Also an :class:`ImportError`, which is what it replaces. The message names the feature and
    the command that installs it (``pip install 'streamhouse-beam[s3]'``).

    Attributes:
        extra: the name of the package extra that provides the dependency.
    """

    def __init__(self, feature: str, extra: str, *, module: str) -> None:
        self.extra = extra
        super().__init__(
            f"{feature} needs {module}, which is not installed: "
            f"pip install 'streamhouse-beam[{extra}]'"
        )


# --------------------------------------------------------------------------------------------
# Segment bytes
# --------------------------------------------------------------------------------------------


class SegmentError(StreamHouseError):
    """Bytes that cannot be read as a StreamHouse segment.

    Attributes:
        key: object key (or file path) of the segment when known, else ``None``.
        position: byte position in the segment where the problem was found, when known.
    """

    def __init__(
        self, message: str, *, key: str | None = None, position: int | None = None
    ) -> None:
        self.key = key
        self.position = position
        where = []
        if key is not None:
            where.append(f"segment {key!r}")
        if position is not None:
            where.append(f"byte {position}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)

    def with_key(self, key: str) -> SegmentError:
        """Return the same error naming ``key`` (for layers that learn the key late)."""
        if self.key is not None:
            return self
        msg = self.args[0]
        if self.position is not None:
            msg = msg.rsplit(" (", 1)[0]
        clone = type(self).__new__(type(self))
        SegmentError.__init__(clone, msg, key=key, position=self.position)
        return clone


class CorruptSegmentError(SegmentError):
    """The bytes contradict the segment format (bad magic, bad index, bad varint, ...)."""


class TruncatedSegmentError(CorruptSegmentError):
    """The data ends before a structure that it declares."""


class ChecksumMismatchError(CorruptSegmentError):
    """The CRC-32 stored in the footer differs from the CRC-32 of the bytes before it."""


class SegmentLimitError(CorruptSegmentError):
    """A declared size (block, record, count) is above the configured safety limit."""


class UnsupportedSegmentError(SegmentError):
    """A segment this reader cannot decode: an unknown version or compression (Zstd)."""


# --------------------------------------------------------------------------------------------
# Object storage
# --------------------------------------------------------------------------------------------


class StorageError(StreamHouseError):
    """An object-store operation failed.

    Attributes:
        key: the object key concerned, when known.
        bucket: the bucket (or root) concerned, when known.
    """

    def __init__(self, message: str, *, key: str | None = None, bucket: str | None = None) -> None:
        self.key = key
        self.bucket = bucket
        where = []
        if bucket:
            where.append(f"bucket {bucket!r}")
        if key is not None:
            where.append(f"key {key!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)


class ObjectNotFoundError(StorageError):
    """The object does not exist (deleted by an operator, lifecycle rule, wrong bucket)."""


class StoragePermissionError(StorageError):
    """The store refused the credentials or the operation."""


class TransientStorageError(StorageError):
    """Throttling, a 5xx answer, a timeout or a reset that persisted past the retry budget."""


class StorageRootNotFoundError(StorageError):
    """The store's root does not exist: a ``file://`` directory or a bucket.

    A configuration error (a typo in the storage url, a bucket that was never created), so it
    is raised whatever ``on_missing_segment`` says: skipping every segment of a store that is
    not there would turn the typo into a successful read of nothing.
    """


class UnsafeKeyError(StorageError):
    """A key that would resolve outside the store's root (``..``, absolute paths, symlinks)."""


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


class MetadataError(StreamHouseError):
    """A metadata-store operation failed."""


class MetadataUnavailableError(MetadataError):
    """The database could not be reached, or stayed locked, past the retry budget."""


class NotAStreamHouseStoreError(MetadataError):
    """The database is not a StreamHouse metadata store: a required table or column is missing."""


class OrganizationError(MetadataError):
    """No organization was given and the store does not hold exactly one; or the given one is unknown."""


class TopicNotFoundError(MetadataError):
    """The topic, or one of its partitions, does not exist in the organization."""


class InconsistentMetadataError(MetadataError):
    """Metadata rows that contradict each other or the segment object they describe."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


class NoCommittedOffsetError(StreamHouseError):
    """``StartPosition.committed(group, fallback="fail")`` found no committed offset.

    Attributes:
        group: the consumer group.
        topic_partition: the partition without a committed offset.
    """

    def __init__(self, group: str, tp: TopicPartition) -> None:
        self.group = group
        self.topic_partition = tp
        super().__init__(
            f"consumer group {group!r} has no committed offset for topic {tp.topic!r} "
            f"partition {tp.partition}; use StartPosition.committed(group, fallback='earliest'"
            f" or 'latest') to start anyway"
        )


class DataLossError(StreamHouseError):
    """A range of offsets that should be readable cannot be read any more.

    Attributes:
        topic, partition: where.
        start_offset, end_offset: the lost range, inclusive at both ends.
    """

    def __init__(
        self, message: str, *, topic: str, partition: int, start_offset: int, end_offset: int
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.start_offset = start_offset
        self.end_offset = end_offset
        super().__init__(
            f"{message} (topic {topic!r}, partition {partition}, offsets {start_offset}..{end_offset})"
        )


class DecodeError(StreamHouseError):
    """A record value (or key) the configured decoder could not decode.

    Attributes:
        topic, partition, offset: the record.
        raw: the undecoded bytes.
        reason: why decoding failed.
        part: ``"value"`` or ``"key"``.
    """

    def __init__(
        self,
        reason: str,
        *,
        topic: str,
        partition: int,
        offset: int,
        raw: bytes,
        part: str = "value",
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.raw = raw
        self.reason = reason
        self.part = part
        super().__init__(
            f"cannot decode {part} of {topic!r} partition {partition} offset {offset}: {reason}"
        )


class EventTimeError(StreamHouseError):
    """An ``EventTimePolicy.from_record`` function failed or returned something not a timestamp.

    Attributes:
        topic, partition, offset: the record.
        reason: what the function did.
    """

    def __init__(self, reason: str, *, topic: str, partition: int, offset: int) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.reason = reason
        super().__init__(
            f"no event time for {topic!r} partition {partition} offset {offset}: {reason}"
        )


class SchemaRegistryError(StreamHouseError):
    """The schema registry could not provide a schema (unknown id, unreachable, bad answer)."""


class UnsupportedOnRunnerError(StreamHouseError):
    """A read option the pipeline's runner cannot honour, refused when the pipeline is built.

    Attributes:
        option: the read argument, e.g. ``"commit_offsets_group"``.
        runner: the runner as the message names it, e.g. ``"Flink (batch mode)"``.
    """

    def __init__(self, message: str, *, option: str = "", runner: str = "") -> None:
        super().__init__(message)
        self.option = option
        self.runner = runner


class RunnerNotInstalledError(StreamHouseError, FileNotFoundError):
    """A runner's binary or jar is not where ``make runners`` (``.ci/fetch-runners``) caches it.

    The message names the path looked at and the ways to provide the runner.
    """
