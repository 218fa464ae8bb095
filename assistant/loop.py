"""The agent loop: search with the question, read, answer with citations; capable models may search again.

`answer()` is a generator of typed events (assistant.events) and never prints. Policy, not the model, takes the
first step (small models choose tools poorly); in multi-step mode the model may then call a tool instead of
answering, up to `max_steps`, and the last step always answers. The prompt is rebuilt each step within a token
budget. A bad tool call becomes a note the model sees; it never crashes the loop.
"""

from __future__ import annotations

from collections.abc import Iterator

from assistant.events import Event, Token
from assistant.models.base import Completion, GenerationOptions, Message, ModelBackend
from assistant.prompting import closed_messages, search_messages
from assistant.state import RunState
from assistant.tools import Tool, ToolContext


def answer(
    question: str,
    model: ModelBackend,
    ctx: ToolContext | None,
    tools: dict[str, Tool],
    *,
    max_steps: int = 3,
    multi: bool = True,
    context_tokens: int = 600,
    max_tokens: int = 256,
    temperature: float = 0.0,
    load_seconds: float = 0.0,
) -> Iterator[Event]:
    """Answer `question`, yielding events; the last event is an `Answer`. `ctx=None` answers closed-book."""
    state = RunState(question, model.name, getattr(ctx.search, "name", "none") if ctx and ctx.search else "none", ctx)
    state.timings["load"] = load_seconds
    options = GenerationOptions(max_tokens=max_tokens, temperature=temperature)
    if ctx is None or ctx.search is None:
        completion = yield from _generate(model, closed_messages(question), options, state)
        yield state.answer(completion.text, [])
        return
    yield from state.call(1, tools["web_search"], {"query": question}, by="policy")
    for step in range(1, max_steps + 1):
        may_search = multi and step < max_steps
        shown = state.shown(context_tokens, model.count_tokens)
        specs = [t.spec() for t in tools.values()] if may_search else []
        messages = search_messages(question, shown, state.notes, may_search)
        completion = yield from _generate(model, messages, GenerationOptions(**{**options.__dict__, "tools": specs}), state)
        if may_search and completion.tool_error:
            state.notes.append(f"Note: your tool call failed: {completion.tool_error}")
            continue
        if may_search and completion.tool_calls:
            for call in completion.tool_calls[:1]:
                yield from state.call(step + 1, tools[call.name], call.arguments)
            continue
        yield state.answer(completion.text, shown)
        return


def _generate(model: ModelBackend, messages: list[Message], options: GenerationOptions, state: RunState):  # type: ignore[no-untyped-def]
    """Stream one generation as Token events and return its Completion."""
    for item in model.stream(messages, options):
        if isinstance(item, Completion):
            state.record(item)
            return item
        yield Token(item)
    raise RuntimeError(f"{model.name} ended its stream without a Completion")
