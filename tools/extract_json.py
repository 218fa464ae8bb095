"""`extract_json`: turn a text into JSON that matches a schema, with the run's own model (assistant/extract.py).

The model passes the text (say, a passage it was shown) and either a JSON Schema or a field list such as
`"name:str, role:str?"`; it gets back one passage (in a `ToolResult`) holding the validated JSON, capped with a
visible marker.
Every failure (an invalid schema, output that fails validation twice, no model in this run) comes back as an
observation through `ToolRetry`, never as a crash. The tool needs `ctx.model`, the backend of the run; it is
offered by `all_tools()`, not by the search loop's `default_tools()`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from assistant.errors import AssistantError
from assistant.tools.context import Passage, ToolContext, ToolResult, ToolRetry

MAX_CHARS = 4000


def capped(text: str, limit: int = MAX_CHARS) -> str:
    """`text`, or its first `limit` characters and a marker saying how much was cut."""
    return text if len(text) <= limit else f"{text[:limit]}… [truncated: {len(text) - limit} more characters]"


def extract_json(ctx: ToolContext, text: str, schema: str | dict[str, Any], many: bool = False) -> ToolResult:
    """Extract facts from a text as JSON matching a schema: a JSON Schema, or fields like "name:str, role:str?".

    `many` returns a list of such objects (e.g. every person mentioned, with their role).
    """
    from assistant.extract import Target, load_schema, run_extraction

    model = ctx.model
    if model is None:
        raise ToolRetry("extract_json is not available in this run (no model to extract with): answer from the text")
    if not text.strip():
        raise ToolRetry("the text is empty: pass the text to extract from")
    try:
        checked, _ = load_schema(schema)
        result = run_extraction(text, Target(checked, many), model)
    except AssistantError as e:
        raise ToolRetry(f"extract_json failed: {e} — try a simpler schema or a shorter text") from None
    out = capped(json.dumps(result.data, ensure_ascii=False))
    digest = hashlib.sha1(out.encode()).hexdigest()[:10]
    return ToolResult([Passage(f"extract_json:{digest}", "extracted JSON", "", out, out[:200])])
