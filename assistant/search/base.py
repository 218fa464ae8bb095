"""The search interface: a backend takes a query and returns results; text is filled when the backend has it.

Web backends return snippets (the loop reads the pages); the local index returns whole passages in `text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class SearchResult:
    """One hit."""

    id: str
    title: str
    url: str = ""
    snippet: str = ""
    text: str = ""
    backend: str = ""


@runtime_checkable
class SearchBackend(Protocol):
    """What the loop needs of a search engine. Failures raise `assistant.errors.SearchError`."""

    name: str

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Up to `max_results` hits for `query`, best first."""
        ...
