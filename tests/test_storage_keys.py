"""encode_key reproduces object_store 0.11's Path::from (the key transformation StreamHouse applies) byte for byte."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamhouse_beam.storage.keys import encode_key, encode_part, key_parts

ESCAPED_ASCII = set('\\{^}%`]">[~<#|*?\r\n/')


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        (
            "org-3f1c/data/orders/3/00000000000000012345.seg",
            "org-3f1c/data/orders/3/00000000000000012345.seg",
        ),
        ("data/événements/0/x.seg", "data/%C3%A9v%C3%A9nements/0/x.seg"),
        ("a//b", "a/b"),
        ("/leading/and/trailing/", "leading/and/trailing"),
        ("a/./b/../c", "a/%2E/b/%2E%2E/c"),
        ("a/.../b", "a/.../b"),
        ("a/..b/.c", "a/..b/.c"),
        ("hello world", "hello world"),
        ("100%", "100%25"),
        ("%25", "%2525"),
        ("x\x00y\x1fz\x7f", "x%00y%1Fz%7F"),
        ("line\r\nbreak", "line%0D%0Abreak"),
        ('\\{^}%`]">[~<#|*?', "%5C%7B%5E%7D%25%60%5D%22%3E%5B%7E%3C%23%7C%2A%3F"),
        ("!$&'()+,;=@:-_.", "!$&'()+,;=@:-_."),
        ("😀", "%F0%9F%98%80"),
        ("", ""),
        ("///", ""),
    ],
)
def test_known_keys_encode_like_object_store(raw: str, encoded: str) -> None:
    assert encode_key(raw) == encoded


def test_encode_part_encodes_a_slash_inside_a_part() -> None:
    assert encode_part("a/b") == "a%2Fb"


def test_encode_part_only_replaces_whole_dot_parts() -> None:
    assert (encode_part("."), encode_part(".."), encode_part("...")) == ("%2E", "%2E%2E", "...")


def test_non_string_key_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="key"):
        encode_key(b"bytes")  # type: ignore[arg-type]


@given(st.text())
def test_each_encoded_part_decodes_back_to_its_raw_part(raw: str) -> None:
    raw_parts = [p for p in raw.split("/") if p]
    parts = key_parts(raw)
    assert len(parts) == len(raw_parts)
    for raw_part, part in zip(raw_parts, parts, strict=True):
        assert part.isascii()
        assert not (ESCAPED_ASCII - {"%"}) & set(part)
        assert all(0x20 <= ord(c) < 0x7F for c in part)
        if raw_part not in (".", ".."):
            decoded = urllib.parse.unquote_to_bytes(part).decode("utf-8", "surrogatepass")
            assert decoded == raw_part
        assert part not in (".", "..")
