"""From a ``segments.s3_key`` string to the object name StreamHouse really wrote.

StreamHouse passes every key through ``object_store::path::Path::from(&str)`` (object_store
0.11), which splits on ``/``, drops empty parts and percent-encodes each part. The metadata
column keeps the raw string, so a reader must apply the same transformation before it asks
S3, GCS or the local filesystem for the object. This module is that transformation, byte for
byte, and nothing else.
"""

from __future__ import annotations

__all__ = ["encode_key", "encode_part", "key_parts"]

# object_store's INVALID set: percent_encoding's CONTROLS (0x00-0x1F, 0x7F), the delimiter,
# the characters AWS and GCS advise against in object names, and CR/LF. Every non-ASCII byte
# is encoded too (percent_encode always does that). Space is deliberately absent.
_SPECIAL = frozenset(b'/\\{^}%`]">[~<#|*?\r\n')
_ENCODED: tuple[str, ...] = tuple(
    f"%{b:02X}" if (b < 0x20 or b == 0x7F or b >= 0x80 or b in _SPECIAL) else chr(b)
    for b in range(256)
)


def encode_part(part: str) -> str:
    """Percent-encode one path part exactly as ``object_store``'s ``PathPart::from`` does.

    Args:
        part: one ``/``-free piece of a key.

    Returns:
        The encoded part: ``"."`` and ``".."`` become ``"%2E"`` and ``"%2E%2E"`` (so no part
        can walk up a directory tree); every other part has control characters, non-ASCII
        bytes (of its UTF-8 form) and ``\\ { ^ } % ` ] " > [ ~ < # | * ?`` replaced by
        ``%XX`` with uppercase hex.
    """
    if part == ".":
        return "%2E"
    if part == "..":
        return "%2E%2E"
    if part.isascii() and part.isalnum():
        return part  # the common case: nothing to encode
    # surrogatepass keeps lone surrogates (possible in Python strings) encodable, as WTF-8.
    return "".join(_ENCODED[b] for b in part.encode("utf-8", "surrogatepass"))


def key_parts(key: str) -> list[str]:
    """Return the encoded, non-empty parts of ``key`` (``Path::from`` before the final join)."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {type(key).__name__}")
    return [encoded for encoded in map(encode_part, key.split("/")) if encoded]


def encode_key(key: str) -> str:
    """Return the object name StreamHouse stores for the raw key ``key``.

    >>> encode_key("org-1/data/événements/0/00000000000000000000.seg")
    'org-1/data/%C3%A9v%C3%A9nements/0/00000000000000000000.seg'
    >>> encode_key("/data//a b/../x#1")
    'data/a b/%2E%2E/x%231'

    Args:
        key: the raw ``segments.s3_key`` string.

    Returns:
        The parts of ``key`` split on ``/``, empty ones dropped, each percent-encoded by
        :func:`encode_part`, joined with ``/``. May be ``""`` when ``key`` has no parts.
    """
    return "/".join(key_parts(key))
