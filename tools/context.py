"""What tools share: the run's search backend, fetch policy and budgets, and the passages they return."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from assistant.search.base import SearchBackend
from assistant.search.cache import Cache
from assistant.web import FetchPolicy

if TYPE_CHECKING:
    from assistant.models.base import ModelBackend


class ToolRetry(Exception):
    """A tool call the model can fix (bad arguments, a page that failed): shown to it as an observation."""


@dataclass
class Passage:
    """A piece of text a tool found, with where it came from."""

    id: str
    title: str
    url: str
    text: str
    snippet: str = ""


@dataclass
class ToolContext:
    """Per-question state and limits the tools work within."""

    question: str
    search: SearchBackend | None
    policy: FetchPolicy
    count_tokens: Callable[[str], int]
    cache: Cache | None = None
    max_results: int = 5
    read_pages: int = 2
    passages_per_page: int = 2
    max_fetches: int = 6
    fetches: int = 0
    known_urls: set[str] = field(default_factory=set)  # fetch_page may read only URLs that search returned
    failures: list[str] = field(default_factory=list)  # sources that could not be reached
    notes: list[str] = field(default_factory=list)  # what else the user should know (a page cut at the cap)
    model: ModelBackend | None = None  # the run's own model, for tools that generate (extract_json)
