"""Each pattern of the OpenAPI document accepts exactly what the API accepts: the languages the
gateway parses (filter, orderBy, updateMask, event types and positions), the id rules of the
paths, and the contract's own patterns (whose Python spelling differs from the document's).
A pattern is read as ECMA-262 reads it: `$` is the end of the string."""

import re
from collections.abc import Callable

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.base import LabelKey, portable
from contracts.errors import InvalidArgument
from contracts.events import POSITION_PATTERN, TYPES_PATTERN
from contracts.ids import FOLDER_ID, IMAGE_ID, IdRule, portable_pattern
from contracts.images import (
    FILTER_PATTERN,
    ORDER_BY_PATTERN,
    UPDATE_MASK_PATTERN,
    CreateImageRequest,
)
from gateway.events_stream import parse_types
from gateway.image_writes import _mask
from gateway.query import parse_filter, parse_order


def _ecma(pattern: str) -> Callable[[str], bool]:
    """Whether `text` matches `pattern` as ECMA-262 (no flags) reads it."""
    assert pattern.startswith("^") and pattern.endswith("$"), pattern
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


def _texts(pattern: str) -> st.SearchStrategy[str]:
    """Matching texts, the same with a character inserted, and anything at all."""
    matching = st.from_regex(pattern[1:-1], fullmatch=True)
    edited = st.tuples(matching, st.integers(0, 200), st.characters()).map(
        lambda t: t[0][: t[1]] + t[2] + t[0][t[1] :]
    )
    return st.one_of(matching, edited, st.text(max_size=30))


def _event_position(text: str) -> None:
    if not re.fullmatch("[0-9]{1,18}", text.strip()) and text.strip():
        raise InvalidArgument("lastEventId")  # gateway/events_stream.py resume_point


LANGUAGES = [
    ("filter", FILTER_PATTERN, _accepts(parse_filter)),
    ("orderBy", ORDER_BY_PATTERN, _accepts(parse_order)),
    ("updateMask", UPDATE_MASK_PATTERN, _accepts(_mask)),
    ("type", TYPES_PATTERN, _accepts(parse_types)),
    ("lastEventId", POSITION_PATTERN, _accepts(_event_position)),
]


@pytest.mark.parametrize(("field", "pattern", "api_accepts"), LANGUAGES)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_language_pattern_accepts_what_the_gateway_parses(
    field: str, pattern: str, api_accepts: Callable[[str], bool], data: st.DataObject
) -> None:
    text = data.draw(_texts(pattern))

    assert _ecma(pattern)(text) == api_accepts(text), (field, text)


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
