"""Tools the model can call: plain typed functions whose docstring is what the model reads.

`tool(fn)` derives a tool's JSON schema from its signature (the first parameter, the `ToolContext`, is not
shown to the model) and validates arguments with the same pydantic model, so a schema is never written twice.
A tool returns a `ToolResult` (its passages, and what it could not reach); one that works for a while is a
generator that yields progress events (`PageRead`) and returns its `ToolResult`. Bad arguments raise
`ToolRetry`, which the loop turns into an observation for the model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError, create_model

from assistant.events import PageRead
from assistant.tools.context import Passage, ToolContext, ToolResult, ToolRetry

__all__ = ["Passage", "Tool", "ToolContext", "ToolResult", "ToolRetry", "tool", "default_tools", "all_tools"]


@dataclass
class Tool:
    """A function the model may call, with the schema derived from its signature."""

    name: str
    description: str
    fn: Callable[..., ToolResult | Generator[PageRead, None, ToolResult]]
    model: Any = field(repr=False)

    def spec(self) -> dict[str, Any]:
        """The OpenAI-style function spec."""
        schema = self.model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": schema},
        }

    def events(self, ctx: ToolContext, arguments: dict[str, Any]) -> Generator[PageRead, None, ToolResult]:
        """Validate `arguments`, run the tool, yield its progress events and return its result."""
        try:
            args = self.model.model_validate(arguments)
        except ValidationError as e:
            problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'arguments'}: {err['msg']}" for err in e.errors())
            raise ToolRetry(f"bad arguments for {self.name}: {problems}") from None
        out = self.fn(ctx, **args.model_dump())
        return (yield from out) if inspect.isgenerator(out) else out

    def __call__(self, ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
        """Run the tool to its end (its progress events are dropped) and return its result."""
        events = self.events(ctx, arguments)
        while True:
            try:
                next(events)
            except StopIteration as done:
                return done.value


def tool(fn: Callable[..., Any]) -> Tool:
    """Make a Tool of `fn(ctx, ...)`: name, docstring and typed parameters become what the model sees."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    hints = inspect.get_annotations(fn, eval_str=True)
    fields: dict[str, Any] = {
        p.name: (hints[p.name], ... if p.default is inspect.Parameter.empty else p.default) for p in params
    }
    description = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    return Tool(fn.__name__, description, fn, create_model(f"{fn.__name__}_args", **fields))


def default_tools() -> dict[str, Tool]:
    """The tools of the search loop, by name."""
    from assistant.tools.fetch_page import fetch_page
    from assistant.tools.web_search import web_search

    return {t.name: t for t in (tool(web_search), tool(fetch_page))}


def all_tools() -> dict[str, Tool]:
    """Every tool, by name: the search loop's plus `extract_json` (which needs `ctx.model`). The QA loop is
    offered only `default_tools()`: another tool's spec would cost prompt tokens at every step; `extract_json`
    is for programs that drive their own loop (README, "Extract JSON")."""
    import warnings

    from assistant.tools.extract_json import extract_json

    with warnings.catch_warnings():  # pydantic notes that the `schema` argument shadows BaseModel.schema: harmless
        warnings.filterwarnings("ignore", 'Field name "schema"', UserWarning)
        extract = tool(extract_json)
    return {**default_tools(), "extract_json": extract}
