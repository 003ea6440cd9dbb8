"""The patterns an OpenAPI document states, wherever they are in it."""

from typing import Any


def document_patterns(node: Any) -> list[str]:
    if isinstance(node, list):
        return [p for item in node for p in document_patterns(item)]
    if not isinstance(node, dict):
        return []
    own = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
    return own + [p for value in node.values() for p in document_patterns(value)]
