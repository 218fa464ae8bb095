"""Keeping a small model's JSON finite: every array bounded in the schema, and the stream watched for the first
array item that repeats an earlier item of its array.

A grammar keeps a small model's JSON well-formed, not finite: SmolLM2 lists the same person again and again
until max_tokens, and no grammar can forbid a repeat (llama.cpp ignores `uniqueItems`). So arrays get a
`maxItems` (`bound_arrays`: one item per word of the text, `item_limit`, where the schema gives none), and the
stream is cut where a repeat begins:

    watch = RepeatWatch()
    for piece in stream:
        if (closed := watch.feed(piece)) is not None:
            break  # `closed`: the JSON so far without the repeated item, its open brackets closed

Items compare as JSON values (key order and spacing aside); objects by their strings alone, so that a copy
whose year counts up is a repeat too. A list copied from a text names each thing once: no list in the labelled
extraction set (evals/data/extraction.jsonl) has two items that would compare equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from assistant.passages import tokenize


def item_limit(text: str) -> int:
    """The most items a list copied from `text` can hold: one per word (a CJK character counts as a word)."""
    return max(1, len(tokenize(text)))


# The keywords whose values are subschemas: a map of them, a list of them, or one.
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions", "dependentSchemas", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMA = ("items", "additionalProperties", "not", "if", "then", "else", "contains", "propertyNames")


def bound_arrays(schema: Any, limit: int) -> Any:
    """A copy of `schema` where every array without `maxItems` gets one: `limit`, or its `minItems` if more."""
    if not isinstance(schema, dict):
        return schema  # true, false
    out = dict(schema)
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            out[key] = {name: bound_arrays(sub, limit) for name, sub in schema[key].items()}
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            out[key] = [bound_arrays(sub, limit) for sub in schema[key]]
    for key in _SUBSCHEMA:
        if key in schema:
            out[key] = bound_arrays(schema[key], limit)
    kind = schema.get("type")
    is_array = kind == "array" or (isinstance(kind, list) and "array" in kind) or "items" in schema
    if is_array and "maxItems" not in schema:
        out["maxItems"] = max(limit, schema.get("minItems", 0))
    return out


@dataclass
class _Open:
    """An open array or object: where its current item starts; for an array, the items seen and where the last
    one ended."""

    kind: str  # "[" or "{"
    item_start: int
    seen: set[str] = field(default_factory=set)
    last_end: int = 0


class RepeatWatch:
    """Reads JSON text piece by piece and finds the first array item equal to an earlier item of its array."""

    def __init__(self) -> None:
        self.text = ""
        self._open: list[_Open] = []
        self._in_string = False
        self._escaped = False

    def feed(self, piece: str) -> str | None:
        """Add `piece`; once an item repeats, the text before it with every open bracket closed, else None."""
        start = len(self.text)
        self.text += piece
        for i in range(start, len(self.text)):
            ch = self.text[i]
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "[{":
                self._open.append(_Open(ch, i + 1))
            elif ch in ",]}" and self._open:
                top = self._open[-1]
                if top.kind == "[" and (item := self.text[top.item_start : i].strip()):
                    key = _canonical(item)
                    if key in top.seen:
                        return self.text[: top.last_end] + "".join(_CLOSE[o.kind] for o in reversed(self._open))
                    top.seen.add(key)
                    top.last_end = i
                top.item_start = i + 1
                if ch != ",":
                    self._open.pop()
        return None


_CLOSE = {"[": "]", "{": "}"}


def _canonical(item: str) -> str:
    """An item as compared: its JSON value with sorted keys, or its text with spacing collapsed if not JSON. An
    object with strings is compared by its strings alone: one that names nothing new while a number counts up
    ("Manga Melech" 2012, 2013, 2014, ...) is the same item again."""
    try:
        value = json.loads(item, strict=False)
    except ValueError:
        return " ".join(item.split())
    if isinstance(value, dict) and (names := _strings(value)):
        return json.dumps(names, ensure_ascii=False)
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _strings(value: object, path: str = "") -> list[tuple[str, str]]:
    """The (path, string) leaves of a JSON value, sorted."""
    if isinstance(value, dict):
        return sorted(leaf for key, item in value.items() for leaf in _strings(item, f"{path}.{key}"))
    if isinstance(value, list):
        return sorted(leaf for item in value for leaf in _strings(item, f"{path}[]"))
    return [(path, value)] if isinstance(value, str) else []
