"""Parsing requests as proto3 JSON parsers do, with every contract rule enforced.

Input accepts camelCase or proto (snake_case) field names, int64 as string or number,
enums by name or number, and `null` as unset. Anything unknown is refused, naming the field.
"""

import enum
import functools
import json
import re
from typing import Any, TypeVar

import msgspec
from msgspec import inspect as mi

from contracts.base import PATTERN_RULES
from contracts.enums import enum_by_number
from contracts.errors import InvalidArgument

T = TypeVar("T", bound=msgspec.Struct)

_json_decoder = msgspec.json.Decoder()

_CAMEL = re.compile(r"_([a-z0-9])")


def camel(name: str) -> str:
    return _CAMEL.sub(lambda m: m.group(1).upper(), name)


def decode_json(body: bytes) -> Any:
    """Raw JSON value of a request body, refusing malformed JSON, bad UTF-8, deep nesting,
    NaN/Infinity and an object holding one key twice (as proto3 JSON parsers do).

    msgspec is the strict gate (UTF-8, lone surrogate escapes); it cannot report duplicate
    keys, so the standard parser reads the body a second time for that. Bodies are small."""
    try:
        _json_decoder.decode(body)
        return json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError, msgspec.DecodeError) as exc:
        raise InvalidArgument(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgument("request body is nested too deeply") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidArgument(f"{key}: key given twice in one object")
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse(value: Any, message_type: type[T], path: str = "") -> T:
    """Convert a raw JSON object into `message_type`, enforcing every declared rule."""
    normalized = _normalize(value, _type_info(message_type), path or "$")
    try:
        return msgspec.convert(normalized, message_type, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(_field_message(str(exc))) from None


def _field_message(text: str) -> str:
    """'Expected … - at `$.labels`' → 'labels: expected …' so the field comes first."""
    detail, sep, where = text.partition(" - at ")
    if not sep:
        return text
    key_part, _, where = where.rpartition(" in ")
    field = where.strip("`").removeprefix("$").removeprefix(".") or "body"
    if key_part:
        field += " (map key)"
    detail = detail.replace("\\\\", "\\").replace("^(?:", "").replace(r")$(?!\n)", "")
    rule = PATTERN_RULES.get(detail.removeprefix("Expected `str` matching regex ").strip("'"))
    if rule:
        detail = f"must be {rule}"
    return f"{field}: {detail[:1].lower()}{detail[1:]}"


@functools.cache
def _type_info(message_type: type) -> mi.Type:
    return mi.type_info(message_type)


@functools.cache
def _field_table(struct_type: type) -> dict[str, mi.Field]:
    """Both spellings of every field: its JSON (camelCase) name and its proto name."""
    info = _type_info(struct_type)
    assert isinstance(info, mi.StructType)
    return {name: f for f in info.fields for name in (f.encode_name, f.name)}


def _normalize(value: Any, info: mi.Type, path: str) -> Any:
    while isinstance(info, mi.Metadata):  # a field's description (in the OpenAPI document)
        info = info.type
    if isinstance(info, mi.UnionType):
        info = next((t for t in info.types if not isinstance(t, mi.NoneType)), info)
    if isinstance(info, mi.StructType) and isinstance(value, dict):
        return _normalize_object(value, info, path)
    if isinstance(info, mi.ListType) and isinstance(value, list):
        return [_normalize(item, info.item_type, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(info, mi.EnumType) and isinstance(value, int) and not isinstance(value, bool):
        return _enum_name(info.cls, value, path)
    if isinstance(value, str) and "\x00" in value:
        # PostgreSQL text cannot hold NUL; no field of the contract needs it.
        raise InvalidArgument(f"{path.removeprefix('$.')}: contains a NUL character")
    return value


def _normalize_object(value: dict[str, Any], info: mi.StructType, path: str) -> dict[str, Any]:
    table = _field_table(info.cls)
    out: dict[str, Any] = {}
    for key, item in value.items():
        field = table.get(key)
        if field is None:
            raise InvalidArgument(f"{_join(path, key)}: unknown field")
        if field.encode_name in out:
            raise InvalidArgument(f"{_join(path, key)}: field given twice")
        if item is not None:
            out[field.encode_name] = _normalize(item, field.type, _join(path, field.encode_name))
    return out


def _enum_name(enum_type: type[enum.Enum], number: int, path: str) -> str:
    member = enum_by_number(enum_type, number)
    if member is None:
        raise InvalidArgument(f"{path.removeprefix('$.')}: unknown enum number {number}")
    return str(member.value)


def _join(path: str, key: str) -> str:
    return key if path == "$" else f"{path.removeprefix('$.')}.{key}"
