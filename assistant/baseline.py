"""The plain baseline every other mode is measured against: `assistant eval --mode plain`.

A 30-line retrieve-then-answer script as researchers write it: the top 3 passages of the configured search for
the question as it is (the local index's BM25 order; for web search, the first three passages read), one fixed
prompt, temperature 0, at most 48 tokens, and the reply's first non-empty line with a leading "Answer:" and
trailing periods stripped. No citations, no trimming, no second step. Its events are the loop's (a policy
`web_search`, then an `Answer` whose `shown` lists the passages given), so evaluation scores it the same way.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

from assistant.events import Answer, Event, Source, StepStarted
from assistant.loop import generation
from assistant.models.base import GenerationOptions, Message, ModelBackend
from assistant.state import RunState
from assistant.tools import ToolContext, default_tools

SYSTEM = (
    "You answer trivia questions using the provided search results. "
    "Reply with only the short answer (a few words), no explanation, no full sentence."
)
PASSAGES = 3
OPTIONS = GenerationOptions(max_tokens=48, temperature=0.0)


def plain_messages(question: str, sources: list[Source]) -> list[Message]:
    """The baseline's two messages: the fixed system prompt, then the numbered results and the question."""
    results = "\n\n".join(f"[{i}] {shown_text(s)}" for i, s in enumerate(sources, 1))
    user = f"Search results:\n{results}\n\nQuestion: {question}\nReply with only the short answer (a few words)."
    return [Message("system", SYSTEM), Message("user", user)]


def shown_text(source: Source) -> str:
    """A result as the baseline's prompt shows it after its number."""
    return f"{source.title}: {source.text.strip()}"


def first_line(reply: str) -> str:
    """The reply's first non-empty line, without a leading "Answer:" and trailing periods."""
    line = next((line.strip() for line in reply.splitlines() if line.strip()), "")
    return re.sub(r"^answer\s*:\s*", "", line, flags=re.I).rstrip(".").strip()


def plain_answer(question: str, model: ModelBackend, ctx: ToolContext) -> Iterator[Event]:
    """Search once with the question, show the top 3 passages, answer; the last event is an `Answer`."""
    state = RunState(question, model.name, getattr(ctx.search, "name", "none"), ctx)
    yield StepStarted(1)
    yield from state.call(1, default_tools()["web_search"], {"query": question}, by="policy")
    shown = state.sources[:PASSAGES]
    completion = yield from generation(model, plain_messages(question, shown), OPTIONS, state)
    short = first_line(completion.text)
    state.timings["total"] = time.perf_counter() - state.started
    yield Answer(
        question=question,
        answer=short,
        short_answer=short,
        sources=[],
        model=model.name,
        steps=state.steps,
        usage={"prompt_tokens": state.usage.prompt_tokens, "completion_tokens": state.usage.completion_tokens},
        timings={k: round(v, 3) for k, v in state.timings.items()},
        search=state.search,
        notes=list(dict.fromkeys(state.problems)),
        shown=[s.n for s in shown],
        context=[{"n": i, "id": s.id, "text": shown_text(s)} for i, s in enumerate(shown, 1)],
    )
