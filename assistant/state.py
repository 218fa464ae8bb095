"""Bookkeeping of one question: sources with stable numbers, notes for the model, usage, timings and steps."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from assistant.events import Answer, Event, Source, ToolCalled, ToolReturned
from assistant.models.base import Completion, Usage
from assistant.prompting import attribute, parse_answer
from assistant.tools import Tool, ToolContext, ToolRetry


@dataclass
class RunState:
    """Everything the loop accumulates while answering one question."""

    question: str
    model: str
    search: str
    ctx: ToolContext | None = None
    sources: list[Source] = field(default_factory=list)
    rank: dict[int, tuple[int, int]] = field(default_factory=dict)  # n -> (step, position): newest step first
    seen: dict[str, int] = field(default_factory=dict)  # passage id or text digest -> n
    notes: list[str] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)
    usage: Usage = field(default_factory=Usage)
    timings: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("load", "search", "read", "prefill", "decode", "total"), 0.0)
    )
    steps: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def call(self, step: int, tool: Tool, arguments: dict[str, Any], by: str = "model") -> Iterator[Event]:
        """Run a tool, number the passages it found, and note failures for the model."""
        key = f"{tool.name}:{sorted(arguments.items())}"
        yield ToolCalled(step, tool.name, arguments, by)
        start = time.perf_counter()
        fetches = self.ctx.fetches if self.ctx else 0
        new: list[Source] = []
        error = None
        try:
            if key in self.calls:
                raise ToolRetry(f"{tool.name} was already called with these arguments: answer now")
            self.calls.add(key)
            assert self.ctx is not None
            for pos, p in enumerate(tool(self.ctx, arguments)):
                new.append(self._add(p.id, p.title, p.url, p.snippet, p.text, (step, pos)))
        except ToolRetry as e:
            error = str(e)
            self.notes.append(f"Note: {error}")
        seconds = time.perf_counter() - start
        read = self.ctx is not None and self.ctx.fetches > fetches
        self.timings["read" if read else "search"] += seconds
        summary = error or f"{len(new)} passages"
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
        yield ToolReturned(step, tool.name, summary, new, error, seconds)

    def _add(self, id: str, title: str, url: str, snippet: str, text: str, rank: tuple[int, int]) -> Source:
        digest = hashlib.sha1(" ".join(text.split()).encode()).hexdigest()
        n = self.seen.get(id) or self.seen.get(digest)  # the same passage found again keeps its number
        if n:
            self.rank[n] = max(self.rank[n], rank)
            return self.sources[n - 1]
        source = Source(len(self.sources) + 1, id, title, url, snippet, text)
        self.sources.append(source)
        self.rank[source.n] = rank
        self.seen[id] = self.seen[digest] = source.n
        return source

    def shown(self, budget: int, count: Callable[[str], int]) -> list[Source]:
        """The best sources that fit `budget` tokens: newest step first, then the search engine's order."""
        chosen: list[Source] = []
        used = 0
        for s in sorted(self.sources, key=lambda s: (-self.rank[s.n][0], self.rank[s.n][1])):
            cost = count(f"[{s.n}] {s.title}: {s.text}")
            if used + cost > budget and chosen:
                continue
            chosen.append(s)
            used += cost
        return sorted(chosen, key=lambda s: s.n)

    def queries(self) -> list[str]:
        """The search queries run so far."""
        queries = [s["arguments"].get("query") for s in self.steps if s["tool"] == "web_search"]
        return [q for q in queries if isinstance(q, str)]

    def record(self, completion: Completion) -> None:
        """Add a generation's tokens and timings."""
        self.usage = self.usage + completion.usage
        self.timings["prefill"] += completion.prefill_s
        self.timings["decode"] += completion.decode_s

    def answer(self, text: str, shown: list[Source]) -> Answer:
        """The final Answer event; citations of sources never shown to the model are removed."""
        parsed = parse_answer(text, {s.n for s in shown}, self.question)
        notes = [f"removed citation [{n}]: no such source was shown" for n in parsed.dropped]
        if shown and not parsed.cited:
            # Small models often cite nothing: cite the shown sources that contain the answer, and say so.
            parsed.cited = attribute(parsed.short_answer, self.question, shown)[:3]
            if parsed.cited:
                marks = "".join(f"[{n}]" for n in parsed.cited)
                first, _, rest = parsed.answer.partition("\n")
                parsed.answer = f"{first} {marks}" + (f"\n{rest}" if rest else "")
                notes.append(f"citations {marks} added: the model cited nothing and those sources contain the answer")
            else:
                notes.append("the answer cites no source, and no source shown contains it: treat it with care")
        if self.ctx and not shown:
            notes.append("no sources were found: this answer comes from the model's memory alone and may be wrong")
        if self.ctx:
            notes += getattr(self.ctx.search, "notes", [])
        if self.ctx and self.ctx.failures:
            notes += [f"could not reach: {f}" for f in dict.fromkeys(self.ctx.failures)]
        by_n = {s.n: s for s in self.sources}
        self.timings["total"] = time.perf_counter() - self.started + self.timings["load"]
        return Answer(
            question=self.question,
            answer=parsed.answer,
            short_answer=parsed.short_answer,
            sources=[by_n[n] for n in parsed.cited],
            model=self.model,
            steps=self.steps,
            usage={"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens},
            timings={k: round(v, 3) for k, v in self.timings.items()},
            search=self.search,
            notes=notes,
            shown=[s.n for s in shown],
        )
