"""Each pattern of the OpenAPI document accepts exactly what the API accepts: the languages the
gateway parses (filter, orderBy, updateMask, event types and positions), the id rules of the
paths, and the contract's own patterns (whose Python spelling differs from the document's).
A pattern is read as ECMA-262 reads it: `$` is the end of the string."""

import json
import re
import subprocess
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api.image_writes import _mask
from api.query import parse_filter, parse_order
from contracts.base import LabelKey, portable
from contracts.codec import parse
from contracts.errors import InvalidArgument
from contracts.events import POSITION_PATTERN, TYPES_PATTERN
from contracts.ids import FOLDER_ID, IMAGE_ID, IdRule, portable_pattern
from contracts.images import (
    FILTER_PATTERN,
    ORDER_BY_PATTERN,
    UPDATE_MASK_PATTERN,
    CreateImageRequest,
    ListImagesRequest,
)
from contracts.openapi import document
from gateway.events.sse_stream import parse_types
from tests.support.openapi_patterns import document_patterns


def _same_in_both(pattern: str) -> None:
    """Fails on what Python's re and ECMA-262 read differently: `\\s`, `\\d`, `\\w`, `\\b` and
    their opposites, and `.` outside a class (ECMA-262's stops at \\r, \\u2028, \\u2029)."""
    escaped = in_class = False
    for char in pattern:
        if escaped:
            assert char not in "sSdDwWbB", f"\\{char} in {pattern}"
            escaped = False
        elif char == "\\":
            escaped = True
        elif char in "[]":
            in_class = char == "["
        else:
            assert in_class or char != ".", f". in {pattern}"


def _ecma(pattern: str) -> Callable[[str], bool]:
    """Whether `text` matches `pattern` as ECMA-262 (no flags) reads it."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
    _same_in_both(pattern)
    compiled = re.compile(pattern[1:-1])
    return lambda text: compiled.fullmatch(text) is not None


def _accepts(parse: Callable[[str], object]) -> Callable[[str], bool]:
    def accepts(text: str) -> bool:
        try:
            parse(text)
        except InvalidArgument:
            return False
        return True

    return accepts


# NUL (which no string may hold), and white space that only one of Python and ECMA-262 has.
_TRICKY = "\x00\x1c\x1f\x85\ufeff\u2028"


def _texts(pattern: str) -> st.SearchStrategy[str]:
    """Matching texts, the same with a character inserted, and anything at all."""
    matching = st.from_regex(pattern[1:-1], fullmatch=True)
    inserted = st.one_of(st.sampled_from(_TRICKY), st.characters())
    edited = st.tuples(matching, st.integers(0, 200), inserted).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    return st.one_of(matching, edited, st.text(max_size=30))


def _list_filter(text: str) -> None:
    parse_filter(parse({"folderId": "f", "filter": text}, ListImagesRequest).filter)


def _list_order(text: str) -> None:
    parse_order(parse({"folderId": "f", "orderBy": text}, ListImagesRequest).order_by)


_LISTING = msgspec.json.schema(ListImagesRequest)["$defs"]["ListImagesRequest"]["properties"]


def _event_position(text: str) -> None:
    if not re.fullmatch("[0-9]{1,18}", text.strip()) and text.strip():
        raise InvalidArgument("lastEventId")  # gateway/events/sse_stream.py resume_point


# (field, its pattern, the API's judgement, the document's maxLength of the field)
LANGUAGES = [
    ("filter", FILTER_PATTERN, _accepts(_list_filter), _LISTING["filter"]["maxLength"]),
    ("orderBy", ORDER_BY_PATTERN, _accepts(_list_order), _LISTING["orderBy"]["maxLength"]),
    ("updateMask", UPDATE_MASK_PATTERN, _accepts(_mask), None),
    ("type", TYPES_PATTERN, _accepts(parse_types), None),
    ("lastEventId", POSITION_PATTERN, _accepts(_event_position), None),
]


@pytest.mark.parametrize(("field", "pattern", "api_accepts", "longest"), LANGUAGES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_language_pattern_accepts_what_the_gateway_parses(
    field: str,
    pattern: str,
    api_accepts: Callable[[str], bool],
    longest: int | None,
    data: st.DataObject,
) -> None:
    text = data.draw(_texts(pattern))
    short_enough = longest is None or len(text) <= longest

    assert (_ecma(pattern)(text) and short_enough) == api_accepts(text), (field, text)


@pytest.mark.parametrize("rule", [IMAGE_ID, FOLDER_ID])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_path_pattern_is_the_id_rule(rule: IdRule, data: st.DataObject) -> None:
    pattern = portable_pattern(rule)
    text = data.draw(_texts(pattern))

    assert _ecma(pattern)(text) == (rule.pattern.fullmatch(text) is not None), text


def _field_accepts(name: str) -> Callable[[str], bool]:
    def accepts(text: str) -> bool:
        try:
            msgspec.convert({"folderId": "f", "uri": "http://a", name: text}, CreateImageRequest)
        except msgspec.ValidationError:
            return False
        return True

    return accepts


def _key_accepts(text: str) -> bool:
    try:
        msgspec.convert(text, LabelKey)
    except msgspec.ValidationError:
        return False
    return True


SCHEMA = msgspec.json.schema(CreateImageRequest)["$defs"]["CreateImageRequest"]["properties"]
KEYS = SCHEMA["labels"]["propertyNames"]
FIELDS = [
    ("name", portable(SCHEMA["name"]["pattern"]), _field_accepts("name"), 63),
    ("family", portable(SCHEMA["family"]["pattern"]), _field_accepts("family"), 63),
    ("labels key", portable(KEYS["pattern"]), _key_accepts, KEYS["maxLength"]),
]


@pytest.mark.parametrize(("field", "pattern", "validator_accepts", "longest"), FIELDS)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_a_portable_pattern_means_what_the_validator_checks(
    field: str,
    pattern: str,
    validator_accepts: Callable[[str], bool],
    longest: int,
    data: st.DataObject,
) -> None:
    """A final newline too, which Python's `$` alone would let through."""
    text = data.draw(st.one_of(_texts(pattern), _texts(pattern).map(lambda t: t + "\n")))

    expected = _ecma(pattern)(text) and len(text) <= longest
    assert expected == validator_accepts(text), (field, text)


# A real ECMA-262 engine reads each pattern of the document and must agree with `_ecma`, which
# the tests above use. With the unicode flag, as JSON Schema 2020-12 asks of validators: without
# it a quantifier counts UTF-16 units, so an id of 26 astral characters would be 52 long.
_NODE_MATCHES = """
const {pattern, texts} = JSON.parse(require("fs").readFileSync(0, "utf8"));
const re = new RegExp(pattern, "u");
process.stdout.write(JSON.stringify(texts.map((t) => re.test(t))));
"""
DOCUMENT_PATTERNS = sorted(set(document_patterns(document())))


@pytest.mark.parametrize("pattern", DOCUMENT_PATTERNS)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_node_reads_a_document_pattern_as_these_tests_do(pattern: str, data: st.DataObject) -> None:
    texts = data.draw(st.lists(_texts(pattern), min_size=40, max_size=40))
    job = json.dumps({"pattern": pattern, "texts": texts}, ensure_ascii=True)

    ran = subprocess.run(
        ["node", "-e", _NODE_MATCHES], input=job, capture_output=True, text=True, check=True
    )

    expected = [_ecma(pattern)(text) for text in texts]
    assert json.loads(ran.stdout) == expected
