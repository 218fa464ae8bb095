"""`web_search`: search with the configured backend (or fallback chain) and read the top pages."""

from __future__ import annotations

from assistant.errors import SearchError
from assistant.passages import cap_words
from assistant.tools.context import Passage, ToolContext, ToolRetry
from assistant.tools.fetch_page import read_passages


def web_search(ctx: ToolContext, query: str) -> list[Passage]:
    """Search the web for a query and return the most relevant passages of the top results."""
    query = " ".join(query.split())
    if not query:
        raise ToolRetry("the query is empty: pass the words to search for")
    if ctx.search is None:
        raise ToolRetry("search is turned off: answer from what you know")
    try:
        results = ctx.search.search(query, max_results=ctx.max_results)
    except SearchError as e:
        ctx.failures.append(str(e))
        raise ToolRetry(f"search failed: {e}") from None
    ctx.failures.extend(getattr(ctx.search, "last_failures", []) or [])
    passages: list[Passage] = []
    pages_read = 0
    ctx.known_urls.update(r.url for r in results if r.url)
    for r in results:
        if r.text:  # the local index returns whole passages: nothing to read
            passages.append(Passage(r.id, r.title, r.url, cap_words(r.text), r.snippet or r.text[:200]))
            continue
        if r.url and pages_read < ctx.read_pages and ctx.fetches < ctx.max_fetches:
            pages_read += 1
            try:
                passages.extend(read_passages(ctx, r.url, r.title, query))
                continue
            except ToolRetry as e:
                ctx.failures.append(str(e))
        if r.snippet:
            passages.append(Passage(r.id or r.url, r.title, r.url, r.snippet, r.snippet))
    if not passages:
        raise ToolRetry(f"no results for {query!r}: try other words")
    return passages
