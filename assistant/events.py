"""Typed events the loop yields. The CLI renders them with rich (or, with `ask --events`, prints each as one JSON
line: `to_json`); batch and eval write the answers as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar


@dataclass
class Source:
    """A passage shown to the model under the number `n`; answers cite it as [n]."""

    n: int
    id: str
    title: str
    url: str = ""
    snippet: str = ""
    text: str = ""

    def public(self) -> dict[str, Any]:
        """The fields a user sees (the full text stays internal)."""
        return {"n": self.n, "id": self.id, "title": self.title, "url": self.url, "snippet": self.snippet}


@dataclass
class StepStarted:
    """A step of the loop begins."""

    kind: ClassVar[str] = "step"  # its "type" in --events
    step: int


@dataclass
class ToolCalled:
    """The loop (policy) or the model called a tool."""

    kind: ClassVar[str] = "tool_call"  # its "type" in --events
    step: int
    name: str
    arguments: dict[str, Any]
    by: str = "model"  # "policy" when the loop called it on its own


@dataclass
class PageRead:
    """A tool read a web page, or failed to, while it worked (`step` is set by the run)."""

    kind: ClassVar[str] = "page_read"  # its "type" in --events
    url: str
    ok: bool
    detail: str = ""  # "2 passages", or why the page could not be read
    step: int = 0


@dataclass
class ToolReturned:
    """A tool's result, as the model will see it; `error` when it failed (the model sees the error too)."""

    kind: ClassVar[str] = "tool_result"  # its "type" in --events
    step: int
    name: str
    summary: str
    sources: list[Source] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class Token:
    """A delta of the streamed answer."""

    kind: ClassVar[str] = "token"  # its "type" in --events
    text: str


@dataclass
class Answer:
    """The final answer with the sources it cites, token usage and timings (seconds)."""

    kind: ClassVar[str] = "answer"  # its "type" in --events
    question: str
    answer: str
    short_answer: str
    sources: list[Source]
    model: str
    steps: list[dict[str, Any]]
    usage: dict[str, int]
    timings: dict[str, float]
    search: str = "none"
    grounded: bool = False  # it cites a source that holds it (ask exits 0 unless uncertain), else ask exits 3 or 4
    notes: list[str] = field(default_factory=list)
    shown: list[int] = field(default_factory=list)  # the numbers of the sources in the final prompt
    # those sources as the final prompt showed them, {n, id, text}: text is what followed "[n] " (title included)
    context: list[dict[str, Any]] = field(default_factory=list)
    lang: str | None = None  # the detected (or --lang) language; set by assistant/routing.py
    lang_confidence: float | None = None
    route: dict[str, Any] | None = None  # language, model, prompt, region, answer_language, fallback, detect_ms
    confidence: float | None = None  # in [0, 1]: token probability and support (assistant/confidence.py)
    # below the threshold (after a second look, where the model takes one): ask exits 4 when it read sources, 3 when
    # it read none (closed-book, nothing found: cli.ask_exit)
    uncertain: bool = False
    looks: list[dict[str, Any]] = field(default_factory=list)  # each answer considered: short_answer, confidence, …

    def to_dict(self) -> dict[str, Any]:
        """The `ask --json` object (`shown`, `context` and `looks` stay internal: evals read them to see what the
        model was given and what it answered at each look)."""
        data = asdict(self)
        data["sources"] = [s.public() for s in self.sources]
        del data["shown"], data["context"], data["looks"]
        return data


Event = StepStarted | ToolCalled | PageRead | ToolReturned | Token | Answer


def to_json(event: Event) -> dict[str, Any]:
    """One `ask --events` line: {"type": kind, the event's fields}; sources as `Source.public`, an answer as
    `Answer.to_dict`."""
    data = event.to_dict() if isinstance(event, Answer) else asdict(event)
    if isinstance(event, ToolReturned):
        data["sources"] = [s.public() for s in event.sources]
    return {"type": event.kind, **data}
