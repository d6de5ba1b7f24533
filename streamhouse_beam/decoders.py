"""Value decoders: turn a record's value bytes into what the pipeline sees.

A decoder is a :class:`ValueDecoder`; :func:`make_decoder` builds one from what users pass as
``value_decoder``:

====================================  ==========================================================
``None`` / ``"bytes"``                the raw bytes (no work at all)
``"utf-8"``                           ``str``
``"json"``                            the parsed JSON value (UTF-8 JSON text)
``AvroDecoder(schema)``               a dict per record, from a schemaless Avro datum (fastavro;
                                      the schema is parsed once)
``SchemaRegistryDecoder(url)``        StreamHouse/Confluent framing: ``0x00``, a
                                      big-endian int32 schema id, then an Avro datum or JSON
                                      text; schemas fetched from the registry once per id
any callable ``f(bytes) -> object``   whatever it returns
====================================  ==========================================================

:meth:`ValueDecoder.decode_record` maps any failure caused by the record's bytes to
:class:`~streamhouse_beam.errors.DecodeError` naming topic, partition and offset and carrying
the raw bytes, so the read transform can fail with it or route the record to its dead-letter
output. A registry that cannot be reached (or answers nonsense) raises
:class:`~streamhouse_beam.errors.SchemaRegistryError` instead: that is not the record's fault,
so it never goes to the dead-letter output.

This module does not import Apache Beam.
"""

from __future__ import annotations

import abc
import io
import json
import struct
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Literal

from streamhouse_beam.errors import DecodeError, MissingExtraError, SchemaRegistryError, redact

__all__ = [
    "AvroDecoder",
    "BytesDecoder",
    "CallableDecoder",
    "JsonDecoder",
    "SchemaRegistryDecoder",
    "Utf8Decoder",
    "ValueDecoder",
    "make_decoder",
]

_FRAME = struct.Struct(">bi")  # magic byte 0, big-endian signed int32 schema id
_MAGIC = 0


class ValueDecoder(abc.ABC):
    """Decodes one record value. Subclasses implement :meth:`decode`.

    Instances must be picklable (they are shipped to Beam workers).
    """

    #: A short name for display data and logs.
    name: str = "decoder"
    #: True when :meth:`decode` returns its input unchanged (lets the reader skip the call).
    identity: bool = False

    @abc.abstractmethod
    def decode(self, value: bytes) -> object:
        """Decode ``value``; raise any exception when the bytes are not decodable."""

    def decode_record(self, value: bytes, *, topic: str, partition: int, offset: int) -> object:
        """Decode one record's value, mapping data failures to :class:`DecodeError`.

        Raises:
            DecodeError: the bytes cannot be decoded (names the record, carries ``value``).
            SchemaRegistryError: the registry could not be asked.
        """
        try:
            return self.decode(value)
        except (SchemaRegistryError, DecodeError):
            raise
        except _RecordDecodeFailure as exc:
            raise DecodeError(
                exc.reason, topic=topic, partition=partition, offset=offset, raw=value
            ) from exc
        except Exception as exc:
            raise DecodeError(
                f"{self.name}: {type(exc).__name__}: {exc}",
                topic=topic,
                partition=partition,
                offset=offset,
                raw=value,
            ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class _RecordDecodeFailure(Exception):
    """Raised inside decoders for bytes that are not decodable; carries a full reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BytesDecoder(ValueDecoder):
    """Leaves values as ``bytes``."""

    name = "bytes"
    identity = True

    def decode(self, value: bytes) -> object:
        return value


class Utf8Decoder(ValueDecoder):
    """Decodes values as UTF-8 text (strictly: invalid UTF-8 is a decode error)."""

    name = "utf-8"

    def decode(self, value: bytes) -> object:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _RecordDecodeFailure(
                f"not valid UTF-8 at byte {exc.start}: {exc.reason}"
            ) from exc


class JsonDecoder(ValueDecoder):
    """Parses values as UTF-8 JSON text."""

    name = "json"

    def decode(self, value: bytes) -> object:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _RecordDecodeFailure(
                f"JSON value is not valid UTF-8 at byte {exc.start}"
            ) from exc
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _RecordDecodeFailure(
                f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
            ) from exc


def _parse_avro_schema(schema: object, what: str) -> Any:
    try:
        import fastavro
    except ImportError as exc:
        raise MissingExtraError("Avro decoding", "avro", module="fastavro") from exc
    source: Any = schema
    if isinstance(schema, str):
        text = schema.strip()
        try:
            source = json.loads(text)
        except json.JSONDecodeError as exc:
            # A bare primitive name such as string is also a valid schema.
            if not text or '"' in text or "{" in text:
                raise ValueError(f"{what} is not valid JSON: {exc}") from exc
            source = text
    try:
        return fastavro.parse_schema(source)
    except Exception as exc:
        raise ValueError(f"{what} is not a valid Avro schema: {exc}") from exc


def _read_avro(payload: bytes, writer: Any, reader: Any | None) -> object:
    import fastavro

    buf = io.BytesIO(payload)
    try:
        datum = fastavro.schemaless_reader(buf, writer, reader)
    except (EOFError, StopIteration) as exc:
        raise _RecordDecodeFailure("Avro datum ends before the schema says it should") from exc
    except Exception as exc:
        raise _RecordDecodeFailure(f"not a valid Avro datum: {type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(payload):
        raise _RecordDecodeFailure(
            f"Avro datum has {len(payload) - buf.tell()} trailing bytes after the record "
            f"(wrong schema?)"
        )
    return datum


class AvroDecoder(ValueDecoder):
    """Decodes schemaless Avro datums (no container header) written with ``schema``.

    Args:
        schema: the writer schema as a dict, a list, or JSON text. Parsed once, here.
        reader_schema: optional reader schema for schema resolution.

    Raises:
        ValueError: the schema is not a valid Avro schema.
    """

    name = "avro"

    def __init__(self, schema: object, reader_schema: object | None = None) -> None:
        self._schema_source = schema
        self._reader_source = reader_schema
        self._writer = _parse_avro_schema(schema, "schema")
        self._reader = (
            _parse_avro_schema(reader_schema, "reader_schema")
            if reader_schema is not None
            else None
        )

    def decode(self, value: bytes) -> object:
        return _read_avro(value, self._writer, self._reader)

    def __getstate__(self) -> dict[str, Any]:
        # Parsed fastavro schemas hold named-type registries; re-parse after unpickling.
        return {"schema": self._schema_source, "reader_schema": self._reader_source}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["schema"], state["reader_schema"])  # type: ignore[misc]

    def __repr__(self) -> str:
        name = self._schema_source.get("name") if isinstance(self._schema_source, dict) else None
        return f"AvroDecoder(schema={name or '...'})"


class _RegisteredSchema:
    __slots__ = ("kind", "parsed", "schema_id")

    def __init__(self, schema_id: int, kind: str, parsed: Any) -> None:
        self.schema_id = schema_id
        self.kind = kind
        self.parsed = parsed


class SchemaRegistryDecoder(ValueDecoder):
    """Decodes schema-framed values (``0x00``, int32 schema id, payload) with schemas from a StreamHouse registry.

    The id is looked up at ``{url}{mount}/schemas/ids/{id}``; the registry answers with a JSON
    object whose ``schema`` holds the schema text and ``schemaType`` its kind. Each id is fetched once per decoder instance (and
    worker) and cached; failed look-ups are not cached.

    Args:
        url: the server's base URL, e.g. ``http://streamhouse:8080``.
        mount: where the registry router is mounted: ``"/schemas"`` on the unified server
            (default), ``""`` for the standalone ``schema-registry`` binary.
        headers: extra HTTP headers (e.g. ``Authorization``); never shown by ``repr``.
        unframed: what to do with values that do not start with the ``0x00`` magic byte:
            ``"fail"`` (a decode error, default), ``"json"`` (parse as JSON text — values
            produced over REST/gRPC are unframed JSON), or ``"bytes"`` (pass through).
        reader_schema: optional Avro reader schema applied to every Avro id.
        timeout: seconds per HTTP request.
        retries: extra attempts for unreachable registries and 5xx answers.

    Raises:
        ValueError: an invalid argument.
    """

    name = "schema-registry"

    def __init__(
        self,
        url: str,
        *,
        mount: str = "/schemas",
        headers: Mapping[str, str] | None = None,
        unframed: Literal["fail", "json", "bytes"] = "fail",
        reader_schema: object | None = None,
        timeout: float = 10.0,
        retries: int = 3,
    ) -> None:
        if not isinstance(url, str) or urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise ValueError(f"url must be an http:// or https:// URL, got {redact(str(url))!r}")
        if not isinstance(mount, str) or (mount and not mount.startswith("/")):
            raise ValueError(f"mount must be '' or start with '/', got {mount!r}")
        if unframed not in ("fail", "json", "bytes"):
            raise ValueError(f"unframed must be 'fail', 'json' or 'bytes', got {unframed!r}")
        if not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries!r}")
        self.url = url.rstrip("/")
        self.mount = mount.rstrip("/")
        self._headers = dict(headers or {})
        self.unframed = unframed
        self._reader_source = reader_schema
        self._reader = (
            _parse_avro_schema(reader_schema, "reader_schema")
            if reader_schema is not None
            else None
        )
        self.timeout = float(timeout)
        self.retries = retries
        self._cache: dict[int, _RegisteredSchema] = {}
        self._lock = threading.Lock()
        self.fetches = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        state["_reader"] = None
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        if self._reader_source is not None:
            self._reader = _parse_avro_schema(self._reader_source, "reader_schema")

    def __repr__(self) -> str:
        return f"SchemaRegistryDecoder(url={redact(self.url)!r}, mount={self.mount!r})"

    def schema_url(self, schema_id: int) -> str:
        """Where the schema with ``schema_id`` is fetched from."""
        return f"{self.url}{self.mount}/schemas/ids/{schema_id}"

    def decode(self, value: bytes) -> object:
        if len(value) < _FRAME.size or value[0] != _MAGIC:
            if self.unframed == "bytes":
                return value
            if self.unframed == "json":
                return JsonDecoder().decode(value)
            raise _RecordDecodeFailure(
                "value is not schema-framed (expected 0x00 and a 4-byte schema id, got "
                f"{value[:5].hex() or 'an empty value'})"
            )
        _, schema_id = _FRAME.unpack_from(value, 0)
        schema = self._schema(schema_id)
        payload = value[_FRAME.size :]
        if schema.kind == "AVRO":
            return _read_avro(payload, schema.parsed, self._reader)
        if schema.kind == "JSON":
            return JsonDecoder().decode(payload)
        raise _RecordDecodeFailure(
            f"schema id {schema_id} is a {schema.kind} schema, which this decoder cannot decode; "
            "pass a callable value_decoder for it"
        )

    def _schema(self, schema_id: int) -> _RegisteredSchema:
        with self._lock:
            cached = self._cache.get(schema_id)
        if cached is not None:
            return cached
        fetched = self._fetch(schema_id)
        with self._lock:
            return self._cache.setdefault(schema_id, fetched)

    def _fetch(self, schema_id: int) -> _RegisteredSchema:
        url = self.schema_url(schema_id)
        where = redact(url)
        body = b""
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                url, headers={"Accept": "application/json", **self._headers}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    body = response.read()
                break
            except urllib.error.HTTPError as exc:
                if exc.code == 404:
                    raise _RecordDecodeFailure(
                        f"schema id {schema_id} is unknown to the registry ({where} answered 404)"
                    ) from exc
                if exc.code < 500 or attempt == self.retries:
                    raise SchemaRegistryError(
                        f"schema registry answered HTTP {exc.code} for schema id {schema_id} "
                        f"at {where}"
                    ) from exc
            except (urllib.error.URLError, OSError) as exc:
                if attempt == self.retries:
                    raise SchemaRegistryError(
                        f"schema registry unreachable at {where} for schema id {schema_id}: "
                        f"{getattr(exc, 'reason', exc)}"
                    ) from exc
            time.sleep(min(2.0, 0.1 * 2**attempt))
        self.fetches += 1
        try:
            answer = json.loads(body)
            text = answer["schema"]
            kind = str(answer.get("schemaType") or "AVRO").upper()
            if not isinstance(text, str):
                raise TypeError("'schema' is not a string")
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaRegistryError(
                f"schema registry answer for schema id {schema_id} at {where} is not a schema "
                f"object: {exc}"
            ) from exc
        if kind == "AVRO":
            try:
                parsed = _parse_avro_schema(text, f"registry schema id {schema_id}")
            except ValueError as exc:
                raise SchemaRegistryError(str(exc)) from exc
        else:
            parsed = text
        return _RegisteredSchema(schema_id, kind, parsed)


class CallableDecoder(ValueDecoder):
    """Wraps a user function ``f(bytes) -> object``; any exception it raises is a decode error."""

    def __init__(self, fn: Callable[[bytes], object]) -> None:
        if not callable(fn):
            raise TypeError(f"value_decoder must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.name = getattr(fn, "__qualname__", None) or type(fn).__name__

    def decode(self, value: bytes) -> object:
        return self.fn(value)

    def __repr__(self) -> str:
        return f"CallableDecoder({self.name})"


_NAMED: dict[str, type[ValueDecoder]] = {
    "bytes": BytesDecoder,
    "raw": BytesDecoder,
    "utf-8": Utf8Decoder,
    "utf8": Utf8Decoder,
    "str": Utf8Decoder,
    "json": JsonDecoder,
}


def make_decoder(spec: object) -> ValueDecoder:
    """Build the decoder for a ``value_decoder`` argument.

    Args:
        spec: ``None``, ``"bytes"``, ``"utf-8"``, ``"json"``, a :class:`ValueDecoder`, or a
            callable.

    Raises:
        ValueError: an unknown decoder name.
        TypeError: neither a name, a decoder nor a callable.
    """
    if spec is None:
        return BytesDecoder()
    if isinstance(spec, ValueDecoder):
        return spec
    if isinstance(spec, str):
        decoder = _NAMED.get(spec.lower())
        if decoder is None:
            raise ValueError(
                f"value_decoder {spec!r} is not known; use 'bytes', 'utf-8', 'json', "
                "AvroDecoder(schema), SchemaRegistryDecoder(url) or a callable"
            )
        return decoder()
    if callable(spec):
        return CallableDecoder(spec)
    raise TypeError(
        f"value_decoder must be a name, a ValueDecoder or a callable, got {type(spec).__name__}"
    )
