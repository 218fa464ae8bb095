"""`fetch_page`: read a web page and keep the passages most relevant to the question.

Pages are fetched under the run's `FetchPolicy` (schemes, private addresses, size and time caps) and split into
~100-word passages ranked against the question by the run's `PageRanker` (BM25 and embeddings fused, or BM25
alone: `--retriever`), so only a few hundred tokens of a page reach the model.
"""

from __future__ import annotations

from collections.abc import Generator

from assistant.errors import FetchError
from assistant.events import PageRead
from assistant.passages import split_passages
from assistant.tools.context import Passage, ToolContext, ToolResult, ToolRetry
from assistant.web import fetch_page as fetch
from assistant.web import page_key


def fetch_page(ctx: ToolContext, url: str) -> Generator[PageRead, None, ToolResult]:
    """Read the web page at a URL and return its passages most relevant to the question."""
    url = url.strip()
    scheme = url.partition(":")[0].lower() if ":" in url else ""
    if scheme not in ctx.policy.allowed_schemes:
        allowed = ", ".join(ctx.policy.allowed_schemes)
        raise ToolRetry(f"refused {url[:120]!r}: fetch_page reads only {allowed} URLs of sources found by web_search")
    if url not in ctx.known_urls:
        # URLs the model makes up, or copies from page text, are how injected instructions would exfiltrate.
        raise ToolRetry(f"{url} is not the URL of a source found by web_search: use one of those")
    if ctx.fetches_left <= 0:
        raise ToolRetry(f"the budget of {ctx.max_fetches} page reads for this question is spent: answer now")
    result = ToolResult()
    passages = yield from read_passages(ctx, url, "", "", result)
    if passages is None:
        result.error = result.failures[-1]
    else:
        result.passages = passages
    return result


def read_passages(
    ctx: ToolContext, url: str, title: str, query: str, result: ToolResult
) -> Generator[PageRead, None, list[Passage] | None]:
    """Fetch `url` (or take it from the cache) and return its best passages for the question and `query`;
    None if it could not be read. What happened (a network read, a failure, a page cut at the cap) is added to
    `result`, the call's own account."""
    cached = ctx.cache.get("page", page_key(url, ctx.policy)) if ctx.cache else None
    if cached is None:
        result.pages_read += 1
        try:
            page = fetch(url, ctx.policy)
        except FetchError as e:
            result.failures.append(f"could not read {url}: {e}")
            yield PageRead(url, ok=False, detail=str(e))
            return None
        if page.truncated:
            result.notes.append(f"read only the first {page.bytes:,} bytes of {url}: the page is longer than the cap")
        cached = {"title": page.title, "text": page.text, "url": page.final_url}
        if ctx.cache:
            ctx.cache.put("page", page_key(url, ctx.policy), cached)
    chunks = split_passages(cached["text"])
    if not chunks:
        result.failures.append(f"{url} has no readable text")
        yield PageRead(url, ok=False, detail="no readable text")
        return None
    title = title or cached["title"] or url
    ranking = ctx.ranker.rank(f"{ctx.question} {query}".strip(), title, chunks)
    if ranking.note:
        result.notes.append(ranking.note)
    best = sorted(ranking.order[: ctx.passages_per_page])  # keep page order: it reads better
    yield PageRead(url, ok=True, detail=f"{len(best)} passages")
    return [Passage(f"{url}#{i}", title, cached["url"] or url, chunks[i], chunks[i][:200]) for i in best]
