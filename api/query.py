"""The list method's `filter` and `orderBy` languages.

filter:  cond (AND cond)*      cond: field (= | !=) value | field [NOT] IN (value, …)
values are "double" or 'single' quoted with C-style escapes; fields: name, family, status.
orderBy: field [asc|desc]      fields: id, name, createdAt.
"""

import re
from typing import get_args

from contracts.errors import InvalidArgument
from store.images import Condition, SortColumn

_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
    r"""|(?P<symbol>!=|=|\(|\)|,)|(?P<word>[A-Za-z0-9_][A-Za-z0-9_.\-]*))"""
)
_ESCAPE = re.compile(r"\\(.)")
FILTER_FIELDS = {"name": "name", "family": "family", "status": "status"}
SORT_FIELDS: dict[str, SortColumn] = {"id": "id", "name": "name", "createdAt": "created_at"}
assert set(SORT_FIELDS.values()) <= set(get_args(SortColumn))


def _tokens(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    text = text.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise InvalidArgument(f"filter: cannot parse at character {position + 1}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _value(token: tuple[str, str]) -> str:
    kind, text = token
    if kind == "string":
        return _ESCAPE.sub(r"\1", text[1:-1])
    if kind == "word":
        return text
    raise InvalidArgument(f"filter: expected a value, found {text!r}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def next(self) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise InvalidArgument("filter: ends too early")
        self.at += 1
        return self.tokens[self.at - 1]

    def keyword(self, word: str) -> bool:
        if self.at < len(self.tokens) and self.tokens[self.at][1].upper() == word:
            self.at += 1
            return True
        return False

    def condition(self) -> Condition:
        field = self.next()[1]
        if field not in FILTER_FIELDS:
            raise InvalidArgument(f"filter: field {field!r} cannot be filtered on")
        if self.keyword("NOT"):
            if not self.keyword("IN"):
                raise InvalidArgument("filter: NOT must be followed by IN")
            return Condition(FILTER_FIELDS[field], "NOT IN", self.value_list())  # type: ignore[arg-type]
        if self.keyword("IN"):
            return Condition(FILTER_FIELDS[field], "IN", self.value_list())  # type: ignore[arg-type]
        op = self.next()[1]
        if op not in ("=", "!="):
            raise InvalidArgument(f"filter: unknown operator {op!r}")
        return Condition(FILTER_FIELDS[field], op, (_value(self.next()),))  # type: ignore[arg-type]

    def value_list(self) -> tuple[str, ...]:
        if self.next()[1] != "(":
            raise InvalidArgument("filter: IN needs a parenthesised list")
        values = [_value(self.next())]
        while (token := self.next())[1] == ",":
            values.append(_value(self.next()))
        if token[1] != ")":
            raise InvalidArgument("filter: unclosed value list")
        return tuple(values)


def parse_filter(text: str) -> list[Condition]:
    if not text.strip():
        return []
    parser = _Parser(text)
    conditions = [parser.condition()]
    while parser.at < len(parser.tokens):
        if not parser.keyword("AND"):
            raise InvalidArgument("filter: conditions must be joined by AND")
        conditions.append(parser.condition())
    return conditions


def parse_order(text: str) -> tuple[SortColumn, bool]:
    """`(column, descending)`; the default is `id asc`."""
    words = text.split()
    if not words:
        return "id", False
    if len(words) > 2 or words[0] not in SORT_FIELDS:
        raise InvalidArgument(f"orderBy: expected one of {', '.join(SORT_FIELDS)} [asc|desc]")
    direction = words[1].lower() if len(words) == 2 else "asc"
    if direction not in ("asc", "desc"):
        raise InvalidArgument("orderBy: direction must be asc or desc")
    return SORT_FIELDS[words[0]], direction == "desc"
