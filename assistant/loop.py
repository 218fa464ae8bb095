"""The agent loop: search with the question, read, answer with citations; search again only when needed.

`answer()` is a generator of typed events (assistant.events) and never prints. Policy, not the model, takes the
first step (small models choose tools poorly), so step one is naive retrieve-then-answer, at its cost. In
multi-step mode an answer that no shown source supports (or "unknown") earns another step: the model picks the
next call itself (web_search with a new query, or fetch_page on a source), decoded under a grammar that admits
only valid calls, and answers again from old and new sources. The last step always answers, and so does a step
after a call that found nothing new. The trigger is a check of the answer against the sources, not the model's
say-so ("unknown"), a choice made on 60 TriviaQA questions in a run whose rows and commit were not kept, so no
figure is published. A bad call becomes a note, never a crash.
Every answer gets a confidence (assistant/confidence.py: its tokens' probability and the support check). Below
the threshold, one more search, twice as deep and ranked by meaning alone where the engine can (a local index
with vectors), else down the same ranking, and the model answers again from the sources it had not been
shown; its answer replaces the first only when no source stated the first and it is more confident, and
lends it its confidence when it is the same answer (`settle`); one still below the threshold is marked
uncertain (`Judging`).
A repeated search never puts sources already shown first again (RunState.shown), so a step that searches again
reads new candidates rather than the same ones re-ranked.
In a chat, `history` holds the earlier turns: the newest that fit the window beside the sources and the answer
go into every prompt, and a follow-up is searched with a standalone query (prompting.standalone_query).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, replace

from assistant.confidence import Judging, Look, answer_probability, confidence, settle
from assistant.events import Event, Source, StepStarted, Token
from assistant.languages import numbers_of
from assistant.models.base import Completion, GenerationOptions, Message, ModelBackend
from assistant.prompting import (
    ENGLISH,
    ParsedAnswer,
    Prompts,
    Turn,
    abstained,
    attribute,
    closed_messages,
    fit_history,
    next_step_messages,
    parse_answer,
    search_messages,
    shown_text,
    standalone_query,
    supported,
)
from assistant.search import by_meaning
from assistant.spans import number_form, source_form
from assistant.state import RunState
from assistant.tools import Tool, ToolContext

log = logging.getLogger(__name__)


@dataclass
class Candidate:
    """An answer the loop may give: the reply parsed, the sources it was given, and how sure it is."""

    parsed: ParsedAnswer
    shown: list[Source]
    look: Look


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
    answer_prompt: str = "answer_example",
    history: Sequence[Turn] = (),
    judging: Judging = Judging(),  # noqa: B008 (a frozen value, shared safely)
) -> Generator[Event, None, None]:
    """Answer `question`, yielding events; the last event is an `Answer`. `ctx=None` answers closed-book.
    `prompts`: the route's prompts (assistant/routing.py); `history`: earlier turns of a chat, oldest first;
    `evidence_tokens` > 0: each source shown as its evidence sentences (assistant/evidence.py); `answer_prompt`: the
    prompt that asks for the answer (`search_messages`)."""
    search = ctx.search if ctx else None
    state = RunState(question, model.name, getattr(search, "name", "none"), ctx)
    state.timings["load"] = load_seconds
    opts = GenerationOptions(max_tokens=max_tokens, temperature=temperature)
    turns = fit_turns(history, question, model, context_tokens, max_tokens, prompts, answer_prompt) if history else []
    yield StepStarted(1)
    # An answer that may be withheld as uncertain is not streamed: its words would show before it is judged.
    streamed = judging.show_uncertain
    if ctx is None or search is None:
        completion = yield from generation(model, closed_messages(question, turns, prompts), opts, state, streamed)
        parsed = parse_answer(completion.text, set(), question, prompts.question_lang)
        closed = judged(parsed, completion, question, [], prompts.question_lang)
        yield state.answer(closed.parsed, [], closed.look, [closed.look], judging)
        return
    query = standalone_query(question, history)
    yield from state.call(1, tools["web_search"], {"query": query}, by="policy")

    def read(shown: list[Source], started: float) -> Generator[Event, None, Candidate]:
        messages = search_messages(question, shown, state.notes, answer_prompt, turns, prompts)
        reply = yield from generation(model, messages, opts, state, streamed)
        parsed = parse_answer(reply.text, {s.n for s in shown}, question, prompts.question_lang)
        candidate = judged(parsed, reply, question, shown, prompts.question_lang)
        u, seconds = reply.usage, time.perf_counter() - started
        look = candidate.look
        candidate.look = replace(
            look, prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, seconds=seconds
        )
        return candidate

    stuck = False  # the last call found nothing new: searching on would only repeat itself
    for step in range(1, max_steps + 1):
        last = not multi or step == max_steps or stuck
        shown = state.shown(context_tokens, model.count_tokens, shown_sources, evidence_tokens)
        best = yield from read(shown, time.perf_counter())
        if last or best.look.supported:  # else it earns another search
            break
        yield StepStarted(step + 1)
        usable = {n: t for n, t in tools.items() if n != "fetch_page" or any(s.url for s in shown)}
        forced = GenerationOptions(max_tokens=96, tools=[t.spec() for t in usable.values()], tool_choice="required")
        messages = next_step_messages(question, shown, state.queries(), state.notes, turns, prompts)
        pick = yield from generation(model, messages, forced, state)
        known = len(state.sources)
        for call in pick.tool_calls[:1]:
            yield from state.call(step + 1, usable[call.name], call.arguments)
        if not pick.tool_calls:
            state.note(f"no valid tool call ({pick.tool_error or pick.text[:80]!r})")
        stuck = len(state.sources) == known
    looks = [best.look]
    if judging.second_look and best.look.confidence < judging.threshold and best.shown:
        # A second look: the same query, twice as deep, ranked by meaning alone where the engine can (a local index
        # with vectors; the first search fused words and meaning), else down the same ranking. Sources already
        # shown keep their place (RunState.shown), so the model reads new candidates; nothing new, no second answer.
        yield StepStarted(step + 1)
        started = time.perf_counter()  # the second look's cost counts its search
        again = by_meaning(ctx.search)
        yield from state.call(step + 1, tools["web_search"], {"query": query}, "policy", 2 * ctx.max_results, again)
        deeper = state.shown(context_tokens, model.count_tokens, shown_sources, evidence_tokens)
        if {s.n for s in deeper} - {s.n for s in best.shown}:
            second = yield from read(deeper, started)
            looks.append(second.look)
            kept, settled = settle(looks)
            best = (best, second)[kept]
            best = replace(best, look=replace(best.look, confidence=settled))
    yield state.answer(best.parsed, best.shown, best.look, looks, judging, answer_prompt != "answer_short")


def in_source_form(short_answer: str, texts: Sequence[str], question: str, lang: str) -> str:
    """A short answer as the sources `texts` write it: a number in their words (`number_form`, in the question's
    language `lang`), then their spelling (`source_form`); an abstention stays as it is."""
    if abstained(short_answer):
        return short_answer
    return source_form(number_form(short_answer, texts, numbers_of(lang), question), texts)


def judged(parsed: ParsedAnswer, reply: Completion, question: str, shown: list[Source], lang: str) -> Candidate:
    """The reply as a candidate: its short answer in the form a source writes it, and its confidence. `lang`:
    the question's language, whose number words a number in digits may take."""
    probability = answer_probability(reply.logprobs, parsed.short_answer)  # of the tokens as generated
    cited_first = sorted(shown, key=lambda s: s.n not in parsed.cited)
    texts = [f"{s.title}\n{s.text}" for s in cited_first]
    gave_up = abstained(parsed.short_answer)
    form = in_source_form(parsed.short_answer, texts, question, lang)
    if form != parsed.short_answer:
        parsed = replace(parsed, short_answer=form, answer=parsed.answer.replace(parsed.short_answer, form, 1))
    held = supported(parsed.short_answer, question, shown)
    # The sources it cites: its own citations, else the shown sources that contain the answer (at most 3), which
    # RunState.answer adds to an answer that cites nothing.
    cited = tuple(parsed.cited) or tuple(attribute(parsed.short_answer, question, shown)[:3] if shown else ())
    look = Look(
        parsed.short_answer,
        confidence(probability, held, gave_up),
        probability,
        held,
        context=tuple((s.n, shown_text(s)) for s in shown),
        cited=cited,
    )
    return Candidate(parsed, shown, look)


def fit_turns(
    history: Sequence[Turn],
    question: str,
    model: ModelBackend,
    context_tokens: int,
    max_tokens: int,
    prompts: Prompts = ENGLISH,
    answer_prompt: str = "answer_example",
) -> list[Turn]:
    """The earlier turns that fit the model's window beside the sources (`context_tokens`), the answer
    (`max_tokens`), the question, the prompts (search, next step and the answering one, all counted, to be safe)
    and slack for notes: never a context overflow."""
    fixed = sum(model.count_tokens(prompts.text(name)) for name in (*_PROMPTS, answer_prompt))
    room = model.context_length - context_tokens - max_tokens - fixed - model.count_tokens(question) - _SLACK
    return fit_history(history, room, model.count_tokens)


_PROMPTS = ("search", "next_step")  # beside the answering prompt the model is given
# Room for what the prompt adds to its fixed parts: a note per step at most (NOTE_CHARS characters, ~70 tokens),
# the queries tried (QUERY_CHARS each, ~35 tokens), over max_steps 3, and the chat template around the messages.
_SLACK = 360


def generation(
    model: ModelBackend, messages: list[Message], options: GenerationOptions, state: RunState, stream: bool = True
) -> Generator[Event, None, Completion]:
    """Stream one generation as Token events (none without `stream`) and return its Completion."""
    for item in model.stream(messages, options):
        if isinstance(item, Completion):
            state.record(item)
            u = item.usage
            log.info(
                "generation: %d prompt + %d completion tokens, prefill %.2fs, decode %.2fs (%s)",
                *(u.prompt_tokens, u.completion_tokens, item.prefill_s, item.decode_s, item.finish_reason),
            )
            return item
        if stream:
            yield Token(item)
    raise RuntimeError(f"{model.name} ended its stream without a Completion")
