"""Value decoders, including the schema-registry decoder against a real HTTP server."""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Iterator

import fastavro
import pytest

from streamhouse_beam.decoders import (
    AvroDecoder,
    BytesDecoder,
    CallableDecoder,
    JsonDecoder,
    SchemaRegistryDecoder,
    Utf8Decoder,
    make_decoder,
)
from streamhouse_beam.errors import DecodeError, SchemaRegistryError
from streamhouse_beam.testing.registry import SchemaRegistryServer

CLICK = {
    "type": "record",
    "name": "Click",
    "fields": [{"name": "user", "type": "string"}, {"name": "n", "type": "long"}],
}


def avro_datum(schema: object, record: object) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def framed(schema_id: int, payload: bytes) -> bytes:
    return struct.pack(">bi", 0, schema_id) + payload


def decode(decoder: object, value: bytes) -> object:
    return make_decoder(decoder).decode_record(value, topic="t", partition=2, offset=41)


def test_make_decoder_accepts_names_instances_and_callables() -> None:
    assert isinstance(make_decoder(None), BytesDecoder)
    assert isinstance(make_decoder("UTF-8"), Utf8Decoder)
    assert isinstance(make_decoder("json"), JsonDecoder)
    assert isinstance(make_decoder(len), CallableDecoder)
    with pytest.raises(ValueError, match="'yaml' is not known"):
        make_decoder("yaml")
    with pytest.raises(TypeError, match="int"):
        make_decoder(3)


def test_bytes_utf8_and_json_decode() -> None:
    assert decode(None, b"\x00\xff") == b"\x00\xff"
    assert decode("utf-8", "é".encode()) == "é"
    assert decode("json", b'{"a": [1, 2]}') == {"a": [1, 2]}


def test_decode_errors_name_the_record_and_keep_the_raw_bytes() -> None:
    with pytest.raises(DecodeError) as info:
        decode("json", b"{not json")
    err = info.value
    assert (err.topic, err.partition, err.offset, err.raw) == ("t", 2, 41, b"{not json")
    assert "'t' partition 2 offset 41" in str(err) and "not valid JSON" in err.reason
    with pytest.raises(DecodeError, match="not valid UTF-8 at byte 1"):
        decode("utf-8", b"a\xff")


def test_callable_decoder_failures_become_decode_errors() -> None:
    def boom(value: bytes) -> object:
        raise KeyError("missing")

    with pytest.raises(DecodeError, match="KeyError"):
        decode(boom, b"x")


def test_avro_decoder_reads_schemaless_datums_and_rejects_garbage() -> None:
    decoder = AvroDecoder(json.dumps(CLICK))
    datum = avro_datum(CLICK, {"user": "ann", "n": 3})
    assert decode(decoder, datum) == {"user": "ann", "n": 3}
    with pytest.raises(DecodeError, match="ends before"):
        decode(decoder, datum[:2])
    with pytest.raises(DecodeError, match="trailing bytes"):
        decode(decoder, datum + b"\x02")
    clone = pickle.loads(pickle.dumps(decoder))
    assert decode(clone, datum) == {"user": "ann", "n": 3}


def test_avro_decoder_refuses_an_invalid_schema_at_construction() -> None:
    with pytest.raises(ValueError, match="not a valid Avro schema"):
        AvroDecoder({"type": "no-such-type"})
    with pytest.raises(ValueError, match="not valid JSON"):
        AvroDecoder("{oops")


@pytest.fixture()
def registry() -> Iterator[SchemaRegistryServer]:
    with SchemaRegistryServer() as server:
        server.add(7, json.dumps(CLICK), subject="clicks-value")
        server.add(8, "{}", "JSON", subject="j-value")
        server.add(9, "x", "PROTOBUF", subject="p-value")
        yield server


def test_registry_decoder_fetches_each_schema_once(registry: SchemaRegistryServer) -> None:
    decoder = SchemaRegistryDecoder(registry.url)
    one = framed(7, avro_datum(CLICK, {"user": "a", "n": 1}))
    two = framed(7, avro_datum(CLICK, {"user": "b", "n": 2}))
    assert decode(decoder, one) == {"user": "a", "n": 1}
    assert decode(decoder, two) == {"user": "b", "n": 2}
    assert decode(decoder, framed(8, b'{"k": 1}')) == {"k": 1}
    assert registry.hits == ["/schemas/schemas/ids/7", "/schemas/schemas/ids/8"]


def test_registry_decoder_unknown_id_and_unframed_values_are_decode_errors(
    registry: SchemaRegistryServer,
) -> None:
    decoder = SchemaRegistryDecoder(registry.url)
    with pytest.raises(DecodeError, match="schema id 99 is unknown"):
        decode(decoder, framed(99, b""))
    with pytest.raises(DecodeError, match="not schema-framed"):
        decode(decoder, b'{"plain": true}')
    with pytest.raises(DecodeError, match="PROTOBUF"):
        decode(decoder, framed(9, b"\x08\x01"))
    assert decode(SchemaRegistryDecoder(registry.url, unframed="json"), b'{"p": 1}') == {"p": 1}
    assert decode(SchemaRegistryDecoder(registry.url, unframed="bytes"), b"\x01raw") == b"\x01raw"


def test_registry_decoder_retries_5xx_then_succeeds(registry: SchemaRegistryServer) -> None:
    registry.fail_next = [503]
    decoder = SchemaRegistryDecoder(registry.url, retries=2)
    assert decode(decoder, framed(7, avro_datum(CLICK, {"user": "c", "n": 5}))) == {
        "user": "c",
        "n": 5,
    }


def test_registry_failures_raise_schema_registry_error_not_decode_error(
    registry: SchemaRegistryServer,
) -> None:
    registry.fail_next = [500, 500]
    decoder = SchemaRegistryDecoder(registry.url, retries=1)
    with pytest.raises(SchemaRegistryError, match="HTTP 500"):
        decode(decoder, framed(7, b""))
    unreachable = SchemaRegistryDecoder("http://127.0.0.1:9", retries=0, timeout=2)
    with pytest.raises(SchemaRegistryError, match="unreachable"):
        decode(unreachable, framed(7, b""))


def test_standalone_registry_mount_and_credentials_stay_out_of_repr(
    registry: SchemaRegistryServer,
) -> None:
    decoder = SchemaRegistryDecoder(
        "http://user:s3cret@127.0.0.1:1", mount="", headers={"Authorization": "Bearer tok3n"}
    )
    assert decoder.schema_url(3) == "http://user:s3cret@127.0.0.1:1/schemas/ids/3"
    shown = repr(decoder) + repr(pickle.loads(pickle.dumps(decoder)))
    assert "s3cret" not in shown and "tok3n" not in shown


def test_registry_decoder_validates_arguments() -> None:
    with pytest.raises(ValueError, match="url"):
        SchemaRegistryDecoder("ftp://x")
    with pytest.raises(ValueError, match="mount"):
        SchemaRegistryDecoder("http://x", mount="schemas")
    with pytest.raises(ValueError, match="unframed"):
        SchemaRegistryDecoder("http://x", unframed="nope")  # type: ignore[arg-type]
