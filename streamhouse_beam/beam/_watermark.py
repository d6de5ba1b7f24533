"""The per-partition watermark estimator, its provider and its versioned state coder.

Each partition's restriction carries a watermark that follows the read's
:class:`~streamhouse_beam.beam._event_time.EventTimePolicy`. Under record time, the default, it

* is **seeded** from the start position: a ``StartPosition.timestamp(ms)`` start seeds ``ms``
  (nothing earlier will be emitted); other starts seed ``MIN_TIMESTAMP`` until the first record
  is seen — pinning the stage there is the honest answer while nothing is known;
* **follows the records**: the read reports the largest event time of each polled chunk
  (:meth:`_PartitionWatermarkEstimator.observe_event_time`) before it emits the chunk, and the
  watermark is the largest one seen — it never regresses, so out-of-order records later in a
  partition are late data, as with Kafka's log-append time. Beam also calls
  :meth:`~_PartitionWatermarkEstimator.observe_timestamp` for every output; that call does
  nothing, because the chunk report already covers the output (the same maximum, once per
  chunk instead of a lock, a ``Timestamp`` conversion and a comparison per record). That is
  correct only because every output of the read is made by one method,
  :meth:`streamhouse_beam.beam._poll.Chunk.emit`, which reports first; so the estimator is
  private to this module (the provider makes it), and ``tests/test_watermark_contract.py``
  fails when an output of ``process()`` does not come from there;
* **advances while idle**: when the partition is caught up and nothing new arrived, the DoFn
  calls :meth:`~_PartitionWatermarkEstimator.advance_idle` with the wall clock minus the
  configured maximum delay (StreamHouse stamps a record when it is appended and makes it
  readable only after the segment is flushed and uploaded, so a record not yet readable was
  stamped no earlier than about ``now - (flush interval + upload time + clock skew)``), so windows downstream of a quiet
  partition still close.

The other policies change the seed, the bound and the idle delay, never the state (the
watermark alone, so a restriction checkpointed under one release resumes under the next):

* a **bound** (``bounded_out_of_orderness``, ``from_record``): a chunk moves the watermark to
  its largest event time minus the bound; the seed of a timestamp start is lowered by the bound
  too. Since the watermark never regresses, it is the largest event time seen minus the bound;
* **processing time**: chunks report the instant they were read and an idle partition moves to
  ``now``; timestamp functions and processing time seed ``MIN_TIMESTAMP`` (a start position is
  a record time and says nothing about theirs).
"""

from __future__ import annotations

import struct

from apache_beam.io.iobase import WatermarkEstimator
from apache_beam.transforms.core import WatermarkEstimatorProvider
from apache_beam.utils.timestamp import MAX_TIMESTAMP, MIN_TIMESTAMP, Duration, Timestamp

from streamhouse_beam.beam._coders import DeterministicCoder
from streamhouse_beam.beam._event_time import EventTimePolicy
from streamhouse_beam.errors import StreamHouseError

__all__ = [
    "PartitionWatermarkEstimatorProvider",
    "WatermarkStateCoder",
]


def _micros(timestamp: Timestamp) -> int | None:
    """``timestamp`` in microseconds, or None when that would lose nanoseconds."""
    try:
        return int(timestamp.micros)
    except ValueError:
        return None


_RECORD_TIME = EventTimePolicy.record_time()


class _PartitionWatermarkEstimator(WatermarkEstimator):  # type: ignore[misc]
    """A monotonic watermark that also advances on idleness. State: the watermark itself.

    Private: its :meth:`observe_timestamp` ignores outputs, so it is right only for a DoFn
    whose outputs all leave through :meth:`streamhouse_beam.beam._poll.Chunk.emit`.

    Args:
        state: the watermark to resume from (``None``: ``MIN_TIMESTAMP``).
        bound_micros: how far the watermark stays behind the largest reported event time.
    """

    def __init__(self, state: Timestamp | None, bound_micros: int = 0) -> None:
        self._watermark: Timestamp = MIN_TIMESTAMP if state is None else state
        self._watermark_micros = _micros(self._watermark)
        self._bound = bound_micros

    def observe_timestamp(self, timestamp: Timestamp) -> None:
        """Beam's per-output call: nothing to do, see :meth:`observe_event_time`."""

    def observe_event_time(self, micros: int) -> None:
        """Take ``micros`` (the largest event time of a chunk about to be emitted) into account.

        The watermark becomes ``micros`` minus the bound when that is later.
        """
        if self._bound:
            micros -= self._bound
        if self._watermark_micros is not None:
            if micros > self._watermark_micros:
                self._watermark = Timestamp(micros=micros)
                self._watermark_micros = micros
        else:  # a nanosecond-precision watermark (from state): compare exactly
            candidate = Timestamp(micros=micros)
            if candidate > self._watermark:
                self._watermark = candidate
                self._watermark_micros = micros

    def current_watermark(self) -> Timestamp:
        return self._watermark

    def get_estimator_state(self) -> Timestamp:
        return self._watermark

    def advance_idle(self, now: Timestamp, max_delay: Duration) -> Timestamp:
        """Move to ``now - max_delay`` if that is later (the partition is caught up and idle)."""
        candidate = now - max_delay
        if candidate > self._watermark:
            self._watermark = min(candidate, MAX_TIMESTAMP)
            self._watermark_micros = _micros(self._watermark)
        return self._watermark


class PartitionWatermarkEstimatorProvider(WatermarkEstimatorProvider):  # type: ignore[misc]
    """Seeds each partition's estimator from the descriptor's start position and the policy.

    Args:
        policy: the read's event-time policy (record time by default).
    """

    def __init__(self, policy: EventTimePolicy = _RECORD_TIME) -> None:
        self.policy = policy

    def initial_estimator_state(self, element: object, restriction: object) -> Timestamp:
        start = getattr(element, "start", None)
        if (
            self.policy.kind == "record_time"
            and start is not None
            and getattr(start, "kind", None) == "timestamp"
        ):
            # Nothing before the start is emitted; a bound lets records that much older through.
            return max(
                Timestamp(micros=start.timestamp_ms * 1000 - self.policy.bound_micros),
                MIN_TIMESTAMP,
            )
        return MIN_TIMESTAMP

    def create_watermark_estimator(
        self, estimator_state: Timestamp
    ) -> _PartitionWatermarkEstimator:
        return _PartitionWatermarkEstimator(estimator_state, self.policy.bound_micros)

    def idle_delay(self, max_delay_seconds: float) -> Duration:
        """How far behind now an idle partition's watermark goes: 0 under processing time."""
        return Duration.of(0 if self.policy.kind == "processing_time" else max_delay_seconds)

    def estimator_state_coder(self) -> WatermarkStateCoder:
        return WatermarkStateCoder()


class WatermarkStateCoder(DeterministicCoder):
    """Deterministic, versioned encoding of the estimator state.

    Layout (big-endian): version ``u8`` (1), watermark ``i64`` microseconds.
    """

    VERSION = 1
    _LAYOUT = struct.Struct(">Bq")

    def encode(self, value: Timestamp) -> bytes:
        return self._LAYOUT.pack(self.VERSION, value.micros)

    def decode(self, encoded: bytes) -> Timestamp:
        if len(encoded) != self._LAYOUT.size or encoded[0] != self.VERSION:
            raise StreamHouseError(
                f"cannot decode a partition watermark state: expected version {self.VERSION} "
                f"and {self._LAYOUT.size} bytes, got {encoded[:1].hex() or 'nothing'} and "
                f"{len(encoded)} bytes"
            )
        return Timestamp(micros=self._LAYOUT.unpack(encoded)[1])
