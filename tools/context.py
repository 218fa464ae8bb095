"""What tools share and what they give back: the run's search backend, fetch policy and limits going in (an
immutable `ToolContext`), passages and an account of what happened coming out (a `ToolResult`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.search.base import SearchBackend
from assistant.search.cache import Cache
from assistant.search.pages import PageRanker
from assistant.web import FetchPolicy

if TYPE_CHECKING:
    from assistant.models.base import ModelBackend


class ToolRetry(Exception):
    """A tool call the model can fix (bad arguments, a URL it may not read): shown to it as an observation."""


@dataclass
class Passage:
    """A piece of text a tool found, with where it came from."""

    id: str
    title: str
    url: str
    text: str
    snippet: str = ""


@dataclass
class ToolResult:
    """What one tool call did; the run (assistant/state.py) merges it into the question's bookkeeping."""

    passages: list[Passage] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # sources that could not be reached, and why
    notes: list[str] = field(default_factory=list)  # what else the user should know (a page cut at the cap)
    pages_read: int = 0  # pages fetched over the network: they count against the question's budget
    urls: list[str] = field(default_factory=list)  # URLs search returned: fetch_page may read only these
    error: str | None = None  # why the call gave nothing: an observation for the model


@dataclass(frozen=True)
class ToolContext:
    """The question and the limits one tool call works within. The run builds a fresh one for each call,
    with what the question has used so far (`known_urls`, `fetches`); tools never change it."""

    question: str
    search: SearchBackend | None
    policy: FetchPolicy
    count_tokens: Callable[[str], int]
    cache: Cache | None = None
    max_results: int = 5
    read_pages: int = 2
    passages_per_page: int = 2
    max_fetches: int = 6
    fetches: int = 0  # pages this question has fetched already
    known_urls: frozenset[str] = frozenset()  # fetch_page may read only URLs that search returned
    model: ModelBackend | None = None  # the run's own model, for tools that generate (extract_json)
    ranker: PageRanker = field(default_factory=lambda: PageRanker("bm25"))  # orders a fetched page's passages

    @property
    def fetches_left(self) -> int:
        """Pages this question may still fetch."""
        return max(0, self.max_fetches - self.fetches)
