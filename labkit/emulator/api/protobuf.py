"""Kubernetes protobuf request bodies, turned into the JSON-shaped objects the API server works with.

kubectl 1.32 POSTs built-in kinds as ``application/vnd.kubernetes.protobuf`` (``kubectl create ns``,
``create secret``, ``create deployment``, ``expose`` …) and does not retry with JSON when a server answers
415. An emulator that only reads JSON would break the workshop's most common commands, so this module
decodes exactly those bodies, with the standard library only.

A body is the 4-byte magic ``k8s\\x00`` followed by a ``runtime.Unknown`` message: its ``typeMeta``
names the apiVersion and kind, and ``raw`` holds the typed object's own protobuf. The typed object is
decoded with declarative tables (per message, field number → :class:`Field`) generated from Kubernetes'
own definitions by ``tools/generate_protobuf_tables.py`` into :mod:`.protobuf_tables`: the numbers and types
of the ``generated.proto`` files (``k8s.io/api/core/v1``, ``apps/v1``, ``rbac/v1``, ``k8s.io/apimachinery``
``meta/v1``) and the JSON names, ``omitempty``, pointers and inlined structs of the ``types.go`` files next
to them. Field numbers missing from a table are skipped, as protobuf requires, so newer clients still
decode; the fields they carry are lost, which is harmless for what the ``kubectl create`` family sends.
The ``runtime.Unknown`` envelope and ``TypeMeta`` (four and two fields) are read by hand below.

Zero values. Kubernetes' gogo-generated marshallers write every non-pointer field, so an empty
``generateName`` or a ``false`` ``stdin`` is on the wire although kubectl's JSON (``omitempty``) would
not show it. The decoder therefore drops empty strings, zeros and ``false`` of plain fields, so the
server's defaulting sees "unset" exactly as it would for JSON. Fields marked ``keep`` are kept even when
zero: pointer fields (``replicas: 0``, ``immutable: false``, ``maxUnavailable: 0`` are only on the wire
when set, so their zero is meaningful) and required fields that JSON always shows (``containerPort``,
``port``, ``name`` of a container). Nested messages are always emitted (``spec: {}``, ``resources: {}``),
as Go's JSON encoder does for struct fields, and an empty ``Time`` becomes ``null``
(``creationTimestamp: null``). A non-pointer ``IntOrString`` that is 0 or "" (a Service's unset
``targetPort``) is dropped rather than shown as ``0``: Kubernetes treats both as unset, and dropping it
lets the emulator's defaulting (``targetPort`` = ``port``) run without a special case.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from labkit.core import kubetime
from labkit.emulator.api.protobuf_tables import MESSAGES
from labkit.emulator.apimachinery.status import bad_request

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# Wire types of the protobuf encoding.
_VARINT, _FIXED64, _LEN, _GROUP_START, _GROUP_END, _FIXED32 = 0, 1, 2, 3, 4, 5
_UINT64 = (1 << 64) - 1

# Field kinds that are not messages of the tables. ``time`` is meta/v1 Time, ``intstr`` util/intstr
# IntOrString and ``quantity`` api/resource Quantity: messages on the wire, scalars in JSON.
_NUMERIC = frozenset({"bool", "int32", "int64"})
_SCALARS = frozenset({"string", "bytes"}) | _NUMERIC


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message table.

    Args:
        json: the JSON (wire) name; unused for ``inline`` fields, whose keys merge into the parent.
        kind: a scalar (``string``, ``bytes``, ``bool``, ``int32``, ``int64``), a special
            (``time``, ``intstr``, ``quantity``) or the name of another message of the tables.
        label: ``one``, ``many`` (repeated), ``map`` (``map<string, kind>``) or ``inline``
            (an embedded Go struct, e.g. ``Probe.handler``, flattened into its parent in JSON).
        keep: keep the value even when it is zero (pointer fields and required JSON fields).
    """

    json: str
    kind: str = "string"
    label: str = "one"
    keep: bool = False


# Per message, field number → Field: generated from Kubernetes' generated.proto and types.go files.
_MESSAGES: dict[str, dict[int, Field]] = {
    message: {number: Field(json, kind, label, keep) for number, (json, kind, label, keep) in fields.items()}
    for message, fields in MESSAGES.items()
}

_RBAC_V1 = "rbac.authorization.k8s.io/v1"
# (apiVersion, kind) → top-level message; the kind is also the message name.
_KINDS: dict[tuple[str, str], str] = {
    (api_version, kind): kind
    for api_version, kind in [
        ("v1", "Namespace"), ("v1", "Secret"), ("v1", "ConfigMap"), ("v1", "Service"),
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
        ("batch/v1", "Job"), ("batch/v1", "CronJob"),
        (_RBAC_V1, "Role"), (_RBAC_V1, "ClusterRole"), (_RBAC_V1, "RoleBinding"),
        (_RBAC_V1, "ClusterRoleBinding"),
        ("authentication.k8s.io/v1", "TokenRequest"), ("authentication.k8s.io/v1", "SelfSubjectReview"),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview"), ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
    ]
}

SUPPORTED_KINDS: tuple[tuple[str, str], ...] = tuple(_KINDS)
"""``(apiVersion, kind)`` pairs :func:`decode_object` and :func:`encode_object` handle."""


class _WireError(Exception):
    """A body that is not well-formed protobuf; ``decode_object`` adds what it was decoding."""


# ---------------------------------------------------------------------------------------------------------
# Wire format


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise _WireError("the message ends inside a varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _UINT64, pos
        shift += 7
        if shift >= 70:
            raise _WireError("a varint is longer than 10 bytes")


def _take(data: bytes, pos: int, size: int) -> tuple[bytes, int]:
    if pos + size > len(data):
        raise _WireError(f"a field claims {size} bytes but only {len(data) - pos} are left")
    return data[pos:pos + size], pos + size


def _read_value(data: bytes, pos: int, wire: int) -> tuple[int | bytes, int]:
    if wire == _VARINT:
        return _read_varint(data, pos)
    if wire == _LEN:
        size, pos = _read_varint(data, pos)
        return _take(data, pos, size)
    if wire in (_FIXED64, _FIXED32):
        raw, pos = _take(data, pos, 8 if wire == _FIXED64 else 4)
        return int.from_bytes(raw, "little"), pos
    raise _WireError(f"unknown wire type {wire}")


def _iter_fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """Yield ``(field number, wire type, value)``: an int for numeric wire types, else bytes."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _WireError("field number 0 is not valid protobuf")
        if wire == _GROUP_START:
            pos = _skip_group(data, pos, number)
            continue
        if wire == _GROUP_END:
            raise _WireError(f"an end-group marker for field {number} without its start")
        value, pos = _read_value(data, pos, wire)
        yield number, wire, value


def _skip_group(data: bytes, pos: int, number: int) -> int:
    # Deprecated proto2 groups: no Kubernetes type uses them, but an unknown field may still be one.
    while True:
        if pos >= len(data):
            raise _WireError(f"group {number} is not closed")
        key, pos = _read_varint(data, pos)
        if key & 7 == _GROUP_END:
            if key >> 3 != number:
                raise _WireError(f"group {number} closed by an end marker for field {key >> 3}")
            return pos
        if key & 7 == _GROUP_START:
            pos = _skip_group(data, pos, key >> 3)
        else:
            _, pos = _read_value(data, pos, key & 7)


def _varint_bytes(value: int) -> bytes:
    value &= _UINT64  # negative ints travel as their 64-bit two's complement, 10 bytes long
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(number: int, wire: int) -> bytes:
    return _varint_bytes(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _tag(number, _LEN) + _varint_bytes(len(payload)) + payload


# ---------------------------------------------------------------------------------------------------------
# Decoding


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _expect(wire: int, wanted: int, where: str) -> None:
    if wire != wanted:
        raise _WireError(f"{where} has wire type {wire}, expected {wanted}")


def _text(raw: bytes) -> str:
    # Go strings may hold any bytes; its JSON encoder replaces invalid UTF-8 with U+FFFD, and so do we.
    return raw.decode("utf-8", errors="replace")


def _decode_time(raw: bytes, where: str) -> str | None:
    if not raw:
        return None  # a zero metav1.Time is marshalled as an empty message; JSON shows null
    seconds = 0
    for number, wire, value in _iter_fields(raw):
        if number == 1:
            _expect(wire, _VARINT, f"{where}.seconds")
            seconds = _signed(value, 64)
    # Nanos are ignored, as Kubernetes does: its JSON form carries whole seconds only.
    try:
        moment = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise _WireError(f"{where}: {seconds} seconds is not a representable time") from exc
    return kubetime.format_time(moment)


def _decode_intstr(raw: bytes, where: str) -> int | str:
    kind, int_val, str_val = 0, 0, ""
    for number, wire, value in _iter_fields(raw):
        if number == 1:
            _expect(wire, _VARINT, f"{where}.type")
            kind = _signed(value, 64)
        elif number == 2:
            _expect(wire, _VARINT, f"{where}.intVal")
            int_val = _signed(value, 32)
        elif number == 3:
            _expect(wire, _LEN, f"{where}.strVal")
            str_val = _text(value)
    return str_val if kind == 1 else int_val


def _decode_quantity(raw: bytes, where: str) -> str:
    text = ""
    for number, wire, value in _iter_fields(raw):
        if number == 1:
            _expect(wire, _LEN, f"{where}.string")
            text = _text(value)
    return text


def _decode_value(kind: str, wire: int, value: Any, where: str) -> Any:
    """One value of ``kind`` in its JSON form."""
    if kind in _NUMERIC:
        _expect(wire, _VARINT, where)
        if kind == "bool":
            return value != 0
        return _signed(value, 32 if kind == "int32" else 64)
    _expect(wire, _LEN, where)
    if kind == "string":
        return _text(value)
    if kind == "bytes":
        return base64.b64encode(value).decode("ascii")
    if kind == "time":
        return _decode_time(value, where)
    if kind == "intstr":
        return _decode_intstr(value, where)
    if kind == "quantity":
        return _decode_quantity(value, where)
    return _decode_message(value, kind, where)


def _decode_map_entry(raw: bytes, kind: str, where: str) -> tuple[str, Any]:
    key = ""
    entry_value: Any = None
    for number, wire, value in _iter_fields(raw):
        if number == 1:
            _expect(wire, _LEN, f"{where} key")
            key = _text(value)
        elif number == 2:
            entry_value = _decode_value(kind, wire, value, f"{where}[{key!r}]")
    if entry_value is None:
        # gogo leaves out an empty value; the map entry still exists, with the zero value.
        entry_value = _decode_value(kind, _LEN, b"", where) if kind not in _NUMERIC else 0
    return key, entry_value


def _is_zero(value: Any) -> bool:
    return value is not None and not isinstance(value, dict | list) and value in ("", 0, False)


def _decode_message(data: bytes, name: str, where: str) -> dict[str, Any]:
    schema = _MESSAGES[name]
    out: dict[str, Any] = {}
    for number, wire, value in _iter_fields(data):
        field = schema.get(number)
        if field is None:
            continue  # unknown field: protobuf semantics say skip it
        path = f"{where}.{field.json}" if where else field.json
        if field.label == "inline":
            _expect(wire, _LEN, f"{where or name} (embedded {field.kind})")
            out.update(_decode_message(value, field.kind, where))
        elif field.label == "map":
            _expect(wire, _LEN, path)
            key, item = _decode_map_entry(value, field.kind, path)
            out.setdefault(field.json, {})[key] = item
        elif field.label == "many":
            items = out.setdefault(field.json, [])
            if field.kind in _NUMERIC and wire == _LEN:
                items.extend(_unpack(value, field.kind, path))
            else:
                items.append(_decode_value(field.kind, wire, value, f"{path}[{len(items)}]"))
        else:
            item = _decode_value(field.kind, wire, value, path)
            if _is_zero(item) and not field.keep and (field.kind in _SCALARS or field.kind == "intstr"):
                continue  # an explicit zero of a plain field means "unset" (see the module docstring)
            out[field.json] = item
    return out


def _unpack(raw: bytes, kind: str, where: str) -> list[Any]:
    # Packed repeated numbers (one length-delimited run of varints): valid protobuf, though gogo
    # does not write them for Kubernetes types.
    values, pos = [], 0
    while pos < len(raw):
        value, pos = _read_varint(raw, pos)
        values.append(_decode_value(kind, _VARINT, value, where))
    return values


def _kinds_list() -> str:
    return ", ".join(f"{kind} ({api_version})" for api_version, kind in SUPPORTED_KINDS)


def _send_json_hint() -> str:
    return (
        "Send this object as JSON instead, for example from a manifest with `kubectl apply -f FILE` "
        "(`--validate=false` does not help: it changes validation, not the request encoding)."
    )


def decode_object(body: bytes) -> dict[str, Any]:
    """Decode a Kubernetes protobuf request body into the object's JSON form.

    Args:
        body: the raw request body: ``k8s\\x00`` followed by a ``runtime.Unknown`` message.

    Returns:
        The object as kubectl would have sent it as JSON: ``apiVersion``, ``kind``, ``metadata`` …, with
        Secret ``data`` as base64 strings, quantities as strings and an empty ``creationTimestamp`` as None.

    Raises:
        StatusError: 400 BadRequest when the magic is missing, the message is truncated or corrupt, or the
            kind is not one of :data:`SUPPORTED_KINDS`.
    """
    if not body.startswith(MAGIC):
        start = body[:8].hex(" ") or "an empty body"
        raise bad_request(
            f"the request body is not Kubernetes protobuf: it must start with the 4-byte magic 'k8s\\x00' "
            f"(Content-Type {CONTENT_TYPE}), but starts with {start}. Send JSON with "
            "Content-Type application/json instead."
        )
    api_version = kind = content_encoding = content_type = ""
    raw = b""
    try:
        for number, wire, value in _iter_fields(body[len(MAGIC):]):
            if number == 1:
                _expect(wire, _LEN, "typeMeta")
                api_version, kind = _type_meta(value)
            elif number == 2:
                _expect(wire, _LEN, "raw")
                raw = value
            elif number == 3:
                _expect(wire, _LEN, "contentEncoding")
                content_encoding = _text(value)
            elif number == 4:
                _expect(wire, _LEN, "contentType")
                content_type = _text(value)
    except _WireError as exc:
        raise bad_request(
            f"the protobuf request body is truncated or corrupt (runtime.Unknown envelope: {exc})."
        ) from exc
    what = f"{kind or '<no kind>'} ({api_version or '<no apiVersion>'})"
    if content_encoding or content_type not in ("", CONTENT_TYPE):
        raise bad_request(
            f"cannot decode the protobuf {what}: its raw object is encoded as "
            f"{content_type or 'protobuf'}{' with ' + content_encoding if content_encoding else ''}, "
            f"and this server reads plain protobuf only. {_send_json_hint()}"
        )
    message = _KINDS.get((api_version, kind))
    if message is None:
        raise bad_request(
            f"cannot decode a protobuf {what}: this server decodes protobuf bodies only for "
            f"{_kinds_list()}. {_send_json_hint()}"
        )
    try:
        decoded = _decode_message(raw, message, "")
    except _WireError as exc:
        raise bad_request(f"the protobuf {what} in the request body is truncated or corrupt: {exc}.") from exc
    return {"apiVersion": api_version, "kind": kind, **decoded}


def _type_meta(raw: bytes) -> tuple[str, str]:
    # runtime.TypeMeta: apiVersion = 1, kind = 2 (the reverse of meta/v1 TypeMeta's numbering).
    api_version = kind = ""
    for number, wire, value in _iter_fields(raw):
        if number == 1:
            _expect(wire, _LEN, "typeMeta.apiVersion")
            api_version = _text(value)
        elif number == 2:
            _expect(wire, _LEN, "typeMeta.kind")
            kind = _text(value)
    return api_version, kind


# ---------------------------------------------------------------------------------------------------------
# Encoding


def _json_keys(name: str) -> set[str]:
    """The JSON keys a message contributes to its dict, inline members included."""
    keys: set[str] = set()
    for field in _MESSAGES[name].values():
        keys |= _json_keys(field.kind) if field.label == "inline" else {field.json}
    return keys


def _encode_time(value: str | None, where: str) -> bytes:
    if value is None:
        return b""
    moment = kubetime.parse_time(value)
    if moment is None:
        raise ValueError(f"{where}: {value!r} is not an RFC 3339 time")
    return _tag(1, _VARINT) + _varint_bytes(int(moment.timestamp()))


def _encode_intstr(value: int | str, where: str) -> bytes:
    # gogo writes all three fields whatever the type; so do we, so our bodies look like kubectl's.
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{where}: {value!r} is neither an int nor a string")
    if isinstance(value, int):
        return (_tag(1, _VARINT) + _varint_bytes(0) + _tag(2, _VARINT) + _varint_bytes(value)
                + _len_field(3, b""))
    return (_tag(1, _VARINT) + _varint_bytes(1) + _tag(2, _VARINT) + _varint_bytes(0)
            + _len_field(3, value.encode()))


def _encode_value(number: int, kind: str, value: Any, where: str) -> bytes:
    if kind in _NUMERIC:
        if not isinstance(value, int):
            raise ValueError(f"{where}: expected {kind}, got {value!r}")
        return _tag(number, _VARINT) + _varint_bytes(int(value))
    if kind == "string":
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return _len_field(number, value.encode())
    if kind == "bytes":
        try:
            return _len_field(number, base64.b64decode(value, validate=True))
        except (binascii.Error, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {value!r} is not base64") from exc
    if kind == "time":
        return _len_field(number, _encode_time(value, where))
    if kind == "intstr":
        return _len_field(number, _encode_intstr(value, where))
    if kind == "quantity":
        return _len_field(number, _len_field(1, str(value).encode()))
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object for {kind}, got {value!r}")
    return _len_field(number, _encode_message(value, kind, where))


def _encode_message(obj: Mapping[str, Any], name: str, where: str) -> bytes:
    out = bytearray()
    for number, field in sorted(_MESSAGES[name].items()):
        if field.label == "inline":
            if _json_keys(field.kind) & obj.keys():
                out += _len_field(number, _encode_message(obj, field.kind, where))
            continue
        if field.json not in obj:
            continue
        value = obj[field.json]
        path = f"{where}.{field.json}" if where else field.json
        if value is None and field.kind != "time":
            continue  # JSON null: unset
        if field.label == "map":
            for key in sorted(value):  # sorted like gogo, so equal objects give equal bytes
                entry_value = _encode_value(2, field.kind, value[key], f"{path}[{key!r}]")
                entry = _len_field(1, str(key).encode()) + entry_value
                out += _len_field(number, entry)
        elif field.label == "many":
            for index, item in enumerate(value):
                out += _encode_value(number, field.kind, item, f"{path}[{index}]")
        else:
            out += _encode_value(number, field.kind, value, path)
    return bytes(out)


def encode_object(obj: Mapping[str, Any]) -> bytes:
    """Encode an object's JSON form as a Kubernetes protobuf body (magic + ``runtime.Unknown``).

    The inverse of :func:`decode_object` for :data:`SUPPORTED_KINDS`; keys outside the schema tables
    (``status`` details, ``managedFields`` …) are left out, as a protobuf message cannot carry them.

    Raises:
        ValueError: the kind is not supported, or a value has the wrong type for its field.
    """
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    message = _KINDS.get((api_version, kind))
    if message is None:
        raise ValueError(
            f"cannot encode {kind} ({api_version}) as protobuf: only {_kinds_list()} are supported"
        )
    type_meta = _len_field(1, api_version.encode()) + _len_field(2, kind.encode())
    raw = _encode_message(obj, message, "")
    return MAGIC + _len_field(1, type_meta) + _len_field(2, raw) + _len_field(3, b"") + _len_field(4, b"")
