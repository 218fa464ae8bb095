"""The search interface: a backend takes a query and returns results; text is filled when the backend has it.

Web backends return snippets (the loop reads the pages); the local index returns whole passages in `text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from assistant.errors import SearchError
from assistant.jsonl import valid_text

# How the local index ranks: BM25 and embeddings fused, or one of them alone (assistant/search/local.py).
Retriever = Literal["hybrid", "bm25", "dense"]


@dataclass
class SearchResult:
    """One hit."""

    id: str
    title: str
    url: str = ""
    snippet: str = ""
    text: str = ""
    backend: str = ""


@dataclass
class SearchOutcome:
    """The results of one query, with the backends that failed on it ("name: why") and the one that answered."""

    results: list[SearchResult]
    failures: list[str] = field(default_factory=list)
    backend: str | None = None
    notes: list[str] = field(default_factory=list)  # backends skipped, and why; what a backend noted on this query


class TransientSearchError(SearchError):
    """A failure that may pass (a timeout, a refused connection, HTTP 429 or 5xx): worth another attempt.

    `retry_after` is the wait in seconds the server asked for (a Retry-After header), if it named one.
    Other `SearchError`s (a misconfigured instance, an answer that is not JSON) are not retried."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@runtime_checkable
class SearchBackend(Protocol):
    """What the loop needs of a search engine. Failures raise `assistant.errors.SearchError`.

    A web backend also has `instance` (the server it asks, "" for none) and `region`: with its name, the query and
    the count they key its cached results. `cacheable = False` keeps a backend out of the cache."""

    name: str

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Up to `max_results` hits for `query`, best first."""
        ...


@runtime_checkable
class Finder(SearchBackend, Protocol):
    """A backend that says more than its results: `find` returns an outcome whose notes reach the answer
    (the local index notes a fallback from hybrid to BM25 retrieval)."""

    def find(self, query: str, max_results: int = 5) -> SearchOutcome:
        """The results for `query`, best first, with notes on how they were found."""
        ...


def web_results(
    rows: list[Any], backend: str, snippet_key: str, max_results: int, url_key: str = "url"
) -> list[SearchResult]:
    """SearchResults from a web engine's JSON rows, skipping rows that are not objects, lack a URL or repeat one."""
    out: list[SearchResult] = []
    seen: set[str] = set()
    for row in rows:
        if not isinstance(row, dict):
            continue
        row = valid_text(row)
        url = str(row.get(url_key) or "").strip()
        if not url or url in seen:
            continue
        seen.add(url)
        title = str(row.get("title") or url).strip()
        out.append(SearchResult(url, title, url, str(row.get(snippet_key) or "").strip(), backend=backend))
        if len(out) >= max_results:
            break
    return out
