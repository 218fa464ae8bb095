"""JSON Lines as this project reads them: a line ends at "\\n" and nowhere else.

`str.splitlines()` also breaks at U+2028, U+2029, U+0085 and other characters that text from pages holds, and that
`json.dumps(..., ensure_ascii=False)` writes as they are: a row split there reads as two broken lines (a resumed run
then asks its question again and keeps both rows).

    from assistant.jsonl import lines, rows
    for n, line in enumerate(lines(text), 1): ...
    results = rows(Path("runs/x/results.jsonl"))

JSON from a server is made writable once, where it comes in (`valid_text`): a lone surrogate in it would crash
whatever writes it next (the result file, the cache, the terminal, a stream).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any


def lines(text: str) -> list[str]:
    """The lines of `text`, split at "\\n" (or "\\r\\n") only; like `str.splitlines`, a last line break ends
    the last line rather than starting an empty one."""
    parts = text.split("\n")
    if parts[-1] == "":
        parts.pop()
    return [p[:-1] if p.endswith("\r") else p for p in parts]


def rows(path: Path) -> list[Any]:
    """Every non-blank line of the UTF-8 file `path`, parsed as JSON."""
    return [json.loads(line) for line in lines(path.read_text(encoding="utf-8")) if line.strip()]


def valid_text(value: Any) -> Any:
    """`value` (a JSON value from a server) with each lone surrogate in its strings made U+FFFD: JSON may write
    half an emoji ("\\ud83d", a snippet cut short), and no UTF-8 writer (a file, a terminal, a socket) takes one."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [valid_text(v) for v in value]
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    return value


SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # JSON text that may hold one (then `valid_text` it)
