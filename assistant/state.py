"""Bookkeeping of one question: sources with stable numbers, notes for the model, usage, timings and steps.

Two kinds of notes: `notes` are shown to the model in the next prompt ("Note: …" after a failed call);
`problems` go to the user, in the answer's notes: what the model got wrong (an empty reply, a call that could
not be parsed or was refused by policy, a stream cut at max_tokens) and how the run went on.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from assistant.confidence import Judging, Look
from assistant.events import Answer, Event, Source, ToolCalled, ToolReturned
from assistant.evidence import excerpts
from assistant.models.base import Completion, Usage
from assistant.passages import cap_tokens, cap_words, same_text
from assistant.prompting import ParsedAnswer, abstained, shown_text, supported
from assistant.search.base import SearchBackend
from assistant.tools import Tool, ToolContext, ToolResult, ToolRetry

log = logging.getLogger(__name__)
TITLE_WORDS = 30  # a source's title, as prompts show it
NOTE_CHARS = 200  # a note to the model (`RunState.note`)


@dataclass
class RunState:
    """Everything the loop accumulates while answering one question. Tools report what they did in their
    `ToolResult`; `call` merges it here (sources, failures, notes, pages read, URLs the model may open)."""

    question: str
    model: str
    search: str
    ctx: ToolContext | None = None  # the question's tool limits; each call gets a copy with what is used so far
    sources: list[Source] = field(default_factory=list)
    rank: dict[int, tuple[int, int]] = field(default_factory=dict)  # n -> (step, position): newest step first
    prompted: set[int] = field(default_factory=set)  # sources put in an answering prompt: found again, not first
    seen: dict[str, int] = field(default_factory=dict)  # passage id or text digest -> n
    notes: list[str] = field(default_factory=list)  # for the model's next prompt (`note`)
    problems: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # sources that could not be reached
    tool_notes: list[str] = field(default_factory=list)  # what tools said the user should know
    urls: set[str] = field(default_factory=set)  # URLs search returned: the only ones fetch_page may read
    fetches: int = 0  # pages fetched over the network for this question
    calls: set[str] = field(default_factory=set)
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("load", "search", "read", "prefill", "decode", "total"), 0.0)
    )
    steps: list[dict[str, Any]] = field(default_factory=list)
    generations: list[str] = field(default_factory=list)  # the finish reason of each generation
    started: float = field(default_factory=time.perf_counter)

    def call(
        self,
        step: int,
        tool: Tool,
        arguments: dict[str, Any],
        by: str = "model",
        depth: int | None = None,
        search: SearchBackend | None = None,
    ) -> Iterator[Event]:
        """Run a tool, number the passages it found, and note failures for the model and the user. `depth`: the
        results a search asks for, when not the question's `max_results` (a second look goes deeper); `search`:
        the engine it asks, when not the question's (a second look ranks by meaning alone)."""
        yield ToolCalled(step, tool.name, arguments, by)
        start = time.perf_counter()
        result = yield from self._run(step, tool, arguments, depth, search)
        new = [self._add(p.id, p.title, p.url, p.snippet, p.text, (step, pos)) for pos, p in enumerate(result.passages)]
        self.failures += result.failures
        self.tool_notes += result.notes
        self.urls.update(result.urls)
        self.urls.update(p.url for p in result.passages if p.url)  # a page's URL after redirects, as sources show it
        self.fetches += result.pages_read
        if result.error:
            self.note(result.error)
            if by == "model" and not result.failures:  # else the failure says it ("could not reach")
                call = f"{tool.name}({_shown(arguments)})"
                self.problems.append(f"step {step}: the model's call {call} was refused: {result.error}")
        seconds = time.perf_counter() - start
        self.timings["read" if result.pages_read else "search"] += seconds
        summary = result.error or f"{len(new)} passages"
        self.steps.append(
            {
                "step": step,
                "tool": tool.name,
                "arguments": arguments,
                "by": by,
                "result": summary,
                "sources": [s.n for s in new],
                "seconds": round(seconds, 3),
            }
        )
        log.info("step %d: %s(%s) by %s: %s in %.2fs", step, tool.name, _shown(arguments), by, summary, seconds)
        yield ToolReturned(step, tool.name, summary, new, result.error, seconds)

    def note(self, text: str) -> None:
        """Tell the model's next prompts what went wrong, in at most NOTE_CHARS characters (a note may quote a
        URL or a model's reply: the prompt's slack for notes is counted on that, assistant/loop.py)."""
        text = " ".join(text.split())
        self.notes.append("Note: " + (text if len(text) <= NOTE_CHARS else text[: NOTE_CHARS - 1] + "…"))

    def _run(
        self, step: int, tool: Tool, arguments: dict[str, Any], depth: int | None, search: SearchBackend | None
    ) -> Generator[Event, None, ToolResult]:
        """The tool's result, its progress events passed on; a refusal or a library's exception becomes an error
        the model sees (and, for an exception, a note for the user) instead of ending the answer."""
        key = f"{tool.name}:{sorted(arguments.items())}" + (f":{depth}" if depth else "") + (":other" if search else "")
        if key in self.calls:
            return ToolResult(error=f"{tool.name} was already called with these arguments: answer now")
        self.calls.add(key)
        assert self.ctx is not None
        ctx = replace(self.ctx, fetches=self.fetches, known_urls=frozenset(self.urls))
        ctx = replace(ctx, search=search) if search else ctx
        events = tool.events(replace(ctx, max_results=depth) if depth else ctx, arguments)
        try:
            while True:
                try:
                    event = next(events)
                except StopIteration as done:
                    return done.value
                log.info("step %d: read %s: %s", step, event.url, event.detail or ("ok" if event.ok else "failed"))
                yield replace(event, step=step)
        except ToolRetry as e:
            return ToolResult(error=str(e))
        except Exception as e:  # sqlite, ddgs, trafilatura, …: what went wrong is the observation
            error = f"{tool.name} failed: {type(e).__name__}: {e}"
            self.problems.append(f"step {step}: {error}")
            return ToolResult(error=error)

    def _add(self, id: str, title: str, url: str, snippet: str, text: str, rank: tuple[int, int]) -> Source:
        # A title is one line of at most TITLE_WORDS words: a page's <title> may hold lines that mimic "[n]"
        # sources, or thousands of words that would crowd out the budget.
        title = cap_words(same_text(_defang(title)), TITLE_WORDS)
        snippet, text = _defang(snippet), _defang(text)
        digest = hashlib.sha1(same_text(text).encode()).hexdigest()
        n = self.seen.get(id) or self.seen.get(digest)  # the same passage found again keeps its number
        if n:
            if n not in self.prompted:  # one the model has read keeps its place: a new search shows new ones
                self.rank[n] = max(self.rank[n], rank)
            return self.sources[n - 1]
        source = Source(len(self.sources) + 1, id, title, url, snippet, text)
        self.sources.append(source)
        self.rank[source.n] = rank
        self.seen[id] = self.seen[digest] = source.n
        return source

    def shown(self, budget: int, count: Callable[[str], int], most: int = 3, evidence: int = 0) -> list[Source]:
        """The best `most` sources that fit `budget` tokens, for an answering prompt: newest step first, then the
        search engine's order. They are recorded as `prompted`: a later search that finds them again does not put
        them first again, so searching again never re-ranks the same candidates the same way.
        `evidence` > 0 shows each of them as its sentences that bear on the question, in about that many tokens
        (assistant/evidence.py); the source keeps its number and id, so a citation still names all of it."""
        ordered = sorted(self.sources, key=lambda s: (-self.rank[s.n][0], self.rank[s.n][1]))
        if evidence > 0:
            # Sentences are weighed against each other across the candidates that may be shown, not the page.
            candidates = ordered[:most]
            query = self.ctx.question if self.ctx else self.question  # a chat's follow-up: its standalone query
            cut = excerpts(query, [s.text for s in candidates], evidence, count)
            ordered = [replace(s, text=t) for s, t in zip(candidates, cut, strict=True)]
        chosen: list[Source] = []
        used = 0
        for s in ordered:
            if len(chosen) == most:
                break
            head = f"[{s.n}] {s.title}: "
            s = replace(s, text=cap_tokens(s.text, budget - count(head), count))  # none costs more than the budget
            cost = count(head + s.text)
            if used + cost > budget and chosen:
                continue
            chosen.append(s)
            used += cost
        self.prompted.update(s.n for s in chosen)
        return sorted(chosen, key=lambda s: s.n)

    def queries(self) -> list[str]:
        """The search queries run so far."""
        queries = [s["arguments"].get("query") for s in self.steps if s["tool"] == "web_search"]
        return [q for q in queries if isinstance(q, str)]

    def record(self, completion: Completion) -> None:
        """Add a generation's tokens and timings; note what went wrong with its output."""
        self.usage = self.usage + completion.usage
        self.timings["prefill"] += completion.prefill_s
        self.timings["decode"] += completion.decode_s
        generation = f"generation {len(self.generations) + 1}"
        self.generations.append(completion.finish_reason)
        if completion.finish_reason == "max_tokens":  # set by toolcalls.stream_with_tools, not by a backend
            self.problems.append(
                f"{generation}: the model did not stop; its output was cut at {completion.usage.completion_tokens} "
                "pieces (max_tokens)"
            )
        if completion.tool_error:
            self.problems.append(f"{generation}: the model's tool call could not be used: {completion.tool_error}")
        elif not completion.text.strip() and not completion.tool_calls:
            self.problems.append(f"{generation}: the model's reply was empty")

    def answer(
        self,
        parsed: ParsedAnswer,
        shown: list[Source],
        chosen: Look,
        looks: list[Look],
        judging: Judging,
        asked_to_cite: bool = True,
    ) -> Answer:
        """The final Answer event from the reply parsed against the `shown` sources (citations of sources never
        shown were removed by the parse), with the confidence of its look, `chosen` among `looks` (every answer
        the loop considered), and marked uncertain below the threshold. A model that was not asked to cite
        (`asked_to_cite` false: the short answer alone) is given its citations without a note saying so."""
        uncertain = chosen.confidence < judging.threshold
        notes = [f"removed citation [{n}]: no such source was shown" for n in parsed.dropped]
        text, cited = parsed.answer, parsed.cited
        if shown and not cited:
            # Small models often cite nothing: cite the shown sources that contain the answer, and say so.
            cited = list(chosen.cited)  # the shown sources that contain the answer (loop.judged attributed them)
            if cited:
                marks = "".join(f"[{n}]" for n in cited)
                first, _, rest = text.partition("\n")
                text = f"{first} {marks}" + (f"\n{rest}" if rest else "")
                if asked_to_cite:
                    notes.append(
                        f"citations {marks} added: the model cited nothing and those sources contain the answer"
                    )
            else:
                notes.append("the answer cites no source, and no source shown contains it: treat it with care")
        grounded = bool(cited) and supported(parsed.short_answer, self.question, [s for s in shown if s.n in cited])
        if cited and not grounded and not abstained(parsed.short_answer):
            notes.append("the sources the answer cites do not contain its words: check them")
        if self.ctx and not shown:
            notes.append("no sources were found: this answer comes from the model's memory alone and may be wrong")
        notes += [f"could not reach: {f}" for f in dict.fromkeys(self.failures)]
        notes += list(dict.fromkeys(self.tool_notes))
        notes += list(dict.fromkeys(self.problems))
        if uncertain:
            why = "the sources did not settle this" if shown else "no source was shown to hold it"
            given = "the answer is the best candidate" if judging.show_uncertain else "no answer is given"
            looked = f"{len(looks)} look{'s' if len(looks) > 1 else ''}"
            notes.insert(
                0, f"uncertain: {why}; {given} (confidence {chosen.confidence:.2f} < {judging.threshold:.2f}, {looked})"
            )
        if all(look.probability is None for look in looks):
            notes.append("the model gave no token probabilities: the confidence is the support check alone")
        by_n = {s.n: s for s in self.sources}
        for n in cited:
            if _INJECTION.search(f"{by_n[n].title} {by_n[n].text}"):
                notes.append(
                    f"source [{n}] holds instructions addressed to the assistant (a prompt injection?): an answer "
                    "it supports may have been dictated by the page — check it"
                )
        self.timings["total"] = time.perf_counter() - self.started + self.timings["load"]
        log.info("answered in %.2fs, %s", self.timings["total"], "from sources" if grounded else "not from sources")
        withheld = uncertain and not judging.show_uncertain
        return Answer(
            question=self.question,
            answer=(NOT_SETTLED if shown else NO_SOURCE) if withheld else text,
            short_answer="" if withheld else parsed.short_answer,
            sources=[] if withheld else [by_n[n] for n in cited],
            model=self.model,
            steps=self.steps,
            usage={"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens},
            timings={k: round(v, 3) for k, v in self.timings.items()},
            search=self.search,
            grounded=grounded,
            notes=notes,
            shown=[s.n for s in shown],
            confidence=chosen.confidence,
            uncertain=uncertain,
            looks=[look.record() for look in looks],
            context=[{"n": s.n, "id": s.id, "text": shown_text(s)} for s in shown],
        )


NOT_SETTLED = "The sources did not settle this."  # the answer when an uncertain one is withheld
NO_SOURCE = "No source was read to settle this."  # … when it was answered without sources (closed-book, none found)


# Phrases by which a page talks to the model rather than to its reader.
_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget) (?:all |any )?(?:of )?(?:the |your )?(?:previous|prior|above|earlier|former) "
    r"(?:instructions|prompts?|rules)|\b(?:reveal|print|repeat) (?:your |the )?system prompt"
    r"|\byou are now (?:a|an|in)\b",
    re.I,
)
_FENCE_TAG = re.compile(r"<(/?\s*sources\b)", re.I)


def _shown(arguments: dict[str, Any]) -> str:
    """A call's arguments as a log line shows them."""
    return ", ".join(f"{k}={v!r}"[:100] for k, v in arguments.items())


def _defang(text: str) -> str:
    """Page text that writes the sources fence's own tags ("</sources>") cannot close the fence early."""
    return _FENCE_TAG.sub(r"‹\1", text) if "<" in text else text
