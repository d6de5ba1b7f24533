"""How much one poll (one ``process()`` call of the read) reads: the defaults and their rule.

Beam-free, so the command line, the YAML provider and the transforms share one definition.
A poll ends at the first limit it reaches: ``max_poll_records`` records, ``max_poll_bytes``
key and value bytes (with the record that reaches them), ``max_poll_seconds``, the range's
stop or the readable end. When neither count limit is given, ``output="batches"`` fills each
batch up to :data:`DEFAULT_MAX_POLL_BYTES` (a batch is one element: the fewer elements and
checkpoints per record, the faster) and the per-record outputs read
:data:`DEFAULT_MAX_POLL_RECORDS` records (beyond which their per-element cost dominates and
larger polls gain nothing; ``benchmarks/results/report.md`` has both sweeps).
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_POLL_BYTES", "DEFAULT_MAX_POLL_RECORDS", "poll_limits"]

#: Records per poll of ``output="records"``, ``"rows"`` and ``"kv"`` when neither
#: ``max_poll_records`` nor ``max_poll_bytes`` is given.
DEFAULT_MAX_POLL_RECORDS = 5000

#: Key and value bytes per poll of ``output="batches"`` when neither ``max_poll_records`` nor
#: ``max_poll_bytes`` is given.
DEFAULT_MAX_POLL_BYTES = 8 * 1024 * 1024


def _limit(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be None or an int, got {type(value).__name__} {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return value


def poll_limits(
    output: str, max_poll_records: object, max_poll_bytes: object
) -> tuple[int | None, int | None]:
    """The validated ``(records, bytes)`` limits of one poll; ``None`` is no limit of that kind.

    Given limits apply as given (both: whichever is reached first); with neither, the default
    of ``output`` (see the module docstring). At least one of the two is set.

    Raises:
        TypeError: a limit is neither None nor an int.
        ValueError: a limit is not positive.
    """
    records = _limit("max_poll_records", max_poll_records)
    nbytes = _limit("max_poll_bytes", max_poll_bytes)
    if records is None and nbytes is None:
        if output == "batches":
            nbytes = DEFAULT_MAX_POLL_BYTES
        else:
            records = DEFAULT_MAX_POLL_RECORDS
    return records, nbytes
