"""The agent loop: search with the question, read, answer with citations; search again only when needed.

`answer()` is a generator of typed events (assistant.events) and never prints. Policy, not the model, takes the
first step (small models choose tools poorly), so step one is naive retrieve-then-answer, at its cost. In
multi-step mode an answer that no shown source supports (or "unknown") earns another step: the model picks the
next call itself (web_search with a new query, or fetch_page on a source), decoded under a grammar that admits
only valid calls, and answers again from old and new sources. The last step always answers, and so does a step
after a call that found nothing new. The trigger is a check of the answer against the sources, not the model's
say-so ("unknown"), a choice made on 60 TriviaQA questions in a run whose rows and commit were not kept, so no
figure is published. A bad call becomes a note, never a crash.
In a chat, `history` holds the earlier turns: the newest that fit the window beside the sources and the answer
go into every prompt, and a follow-up is searched with a standalone query (prompting.standalone_query).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Sequence

from assistant.events import Event, StepStarted, Token
from assistant.models.base import Completion, GenerationOptions, Message, ModelBackend
from assistant.prompting import (
    ENGLISH,
    Prompts,
    Turn,
    closed_messages,
    fit_history,
    next_step_messages,
    parse_answer,
    search_messages,
    standalone_query,
    supported,
)
from assistant.state import RunState
from assistant.tools import Tool, ToolContext

log = logging.getLogger(__name__)


def answer(
    question: str,
    model: ModelBackend,
    ctx: ToolContext | None,
    tools: dict[str, Tool],
    *,
    prompts: Prompts = ENGLISH,
    max_steps: int = 3,
    multi: bool = True,
    context_tokens: int = 600,
    shown_sources: int = 3,
    evidence_tokens: int = 0,
    max_tokens: int = 256,
    temperature: float = 0.0,
    load_seconds: float = 0.0,
    example: bool = True,
    history: Sequence[Turn] = (),
) -> Generator[Event, None, None]:
    """Answer `question`, yielding events; the last event is an `Answer`. `ctx=None` answers closed-book.
    `prompts`: the route's prompts (assistant/routing.py); `history`: earlier turns of a chat, oldest first;
    `evidence_tokens` > 0: each source shown as its evidence sentences (assistant/evidence.py)."""
    search = ctx.search if ctx else None
    state = RunState(question, model.name, getattr(search, "name", "none"), ctx)
    state.timings["load"] = load_seconds
    opts = GenerationOptions(max_tokens=max_tokens, temperature=temperature)
    turns = fit_turns(history, question, model, context_tokens, max_tokens, prompts) if history else []
    yield StepStarted(1)
    if ctx is None or search is None:
        completion = yield from generation(model, closed_messages(question, turns, prompts), opts, state)
        yield state.answer(parse_answer(completion.text, set(), question), [])
        return
    query = standalone_query(question, history)  # as ToolContext.question in runner.py
    yield from state.call(1, tools["web_search"], {"query": query}, by="policy")
    stuck = False  # the last call found nothing new: searching on would only repeat itself
    for step in range(1, max_steps + 1):
        last = not multi or step == max_steps or stuck
        shown = state.shown(context_tokens, model.count_tokens, shown_sources, evidence_tokens)
        messages = search_messages(question, shown, state.notes, example, turns, prompts)
        reply = yield from generation(model, messages, opts, state)
        parsed = parse_answer(reply.text, {s.n for s in shown}, question)
        if last or supported(parsed.short_answer, question, shown):  # else it earns another search
            yield state.answer(parsed, shown)
            return
        yield StepStarted(step + 1)
        usable = {n: t for n, t in tools.items() if n != "fetch_page" or any(s.url for s in shown)}
        forced = GenerationOptions(max_tokens=96, tools=[t.spec() for t in usable.values()], tool_choice="required")
        messages = next_step_messages(question, shown, state.queries(), state.notes, turns, prompts)
        pick = yield from generation(model, messages, forced, state)
        known = len(state.sources)
        for call in pick.tool_calls[:1]:
            yield from state.call(step + 1, usable[call.name], call.arguments)
        if not pick.tool_calls:
            state.notes.append(f"Note: no valid tool call ({pick.tool_error or pick.text[:80]!r})")
        stuck = len(state.sources) == known


def fit_turns(
    history: Sequence[Turn],
    question: str,
    model: ModelBackend,
    context_tokens: int,
    max_tokens: int,
    prompts: Prompts = ENGLISH,
) -> list[Turn]:
    """The earlier turns that fit the model's window beside the sources (`context_tokens`), the answer
    (`max_tokens`), the question, the system prompts (all counted, to be safe) and slack for notes: never a
    context overflow."""
    fixed = sum(model.count_tokens(prompts.text(name)) for name in _PROMPTS)
    room = model.context_length - context_tokens - max_tokens - fixed - model.count_tokens(question) - _SLACK
    return fit_history(history, room, model.count_tokens)


_PROMPTS = ("search", "next_step", "answer_example", "answer_format")
_SLACK = 160  # notes (a failed call, the queries tried) and the chat template around the current messages


def generation(
    model: ModelBackend, messages: list[Message], options: GenerationOptions, state: RunState
) -> Generator[Event, None, Completion]:
    """Stream one generation as Token events and return its Completion."""
    for item in model.stream(messages, options):
        if isinstance(item, Completion):
            state.record(item)
            u = item.usage
            log.info(
                "generation: %d prompt + %d completion tokens, prefill %.2fs, decode %.2fs (%s)",
                *(u.prompt_tokens, u.completion_tokens, item.prefill_s, item.decode_s, item.finish_reason),
            )
            return item
        yield Token(item)
    raise RuntimeError(f"{model.name} ended its stream without a Completion")
