"""JSON Lines as this project reads them: a line ends at "\\n" and nowhere else.

`str.splitlines()` also breaks at U+2028, U+2029, U+0085 and other characters that text from pages holds, and that
`json.dumps(..., ensure_ascii=False)` writes as they are: a row split there reads as two broken lines (a resumed run
then asks its question again and keeps both rows).

    from assistant.jsonl import lines, rows
    for n, line in enumerate(lines(text), 1): ...
    results = rows(Path("runs/x/results.jsonl"))
"""

from __future__ import annotations

import json
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
