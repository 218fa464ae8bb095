"""`web_search`: search with the configured backend (or fallback chain) and read the top pages."""

from __future__ import annotations

from collections.abc import Generator

from assistant.errors import SearchError
from assistant.events import PageRead
from assistant.passages import cap_words
from assistant.search import search_outcome
from assistant.tools.context import Passage, ToolContext, ToolResult, ToolRetry
from assistant.tools.fetch_page import read_passages


def web_search(ctx: ToolContext, query: str) -> Generator[PageRead, None, ToolResult]:
    """Search the web for a query and return the most relevant passages of the top results."""
    query = " ".join(query.split())
    if not query:
        raise ToolRetry("the query is empty: pass the words to search for")
    if ctx.search is None:
        raise ToolRetry("search is turned off: answer from what you know")
    try:
        outcome = search_outcome(ctx.search, query, ctx.max_results)
    except SearchError as e:
        return ToolResult(failures=[str(e)], error=f"search failed: {e}")
    result = ToolResult(failures=list(outcome.failures), notes=list(outcome.notes))
    result.urls = [r.url for r in outcome.results if r.url]
    tried = 0  # pages this search tried to read, from the cache or the network
    for r in outcome.results:
        if r.text:  # the local index returns whole passages: nothing to read
            result.passages.append(Passage(r.id, r.title, r.url, cap_words(r.text), r.snippet or r.text[:200]))
            continue
        if r.url and tried < ctx.read_pages and result.pages_read < ctx.fetches_left:
            tried += 1
            passages = yield from read_passages(ctx, r.url, r.title, query, result)
            if passages is not None:
                result.passages.extend(passages)
                continue
        if r.snippet:
            result.passages.append(Passage(r.id or r.url, r.title, r.url, r.snippet, r.snippet))
    if not result.passages:
        result.error = f"no results for {query!r}: try other words"
    return result
