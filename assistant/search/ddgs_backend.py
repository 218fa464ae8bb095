"""Web search through the `ddgs` metasearch library (DuckDuckGo, Bing, Brave, Wikipedia, ...): no API key.

    PYTHONPATH=. python -c "from assistant.search.ddgs_backend import DDGSSearch; \
        print(DDGSSearch().search('who painted the night watch'))"

Returns snippets only (`text` stays empty): the loop fetches and reads the pages it wants. `ddgs` is imported
on the first search, so importing this module costs nothing. Rate limits, timeouts and network errors are
`TransientSearchError`s, which the fallback chain retries with backoff within its time budget.
"""

from __future__ import annotations

import math
import re

from assistant.errors import SearchError
from assistant.search.base import SearchResult, TransientSearchError, web_results

# ddgs ≥ 9 splits the region into country and language for every engine ("wt" is no language, so
# Wikipedia would be asked at wt.wikipedia.org); its own default stands in for DuckDuckGo's "no region".
_NO_REGION = {"wt-wt": "us-en", "": "us-en"}


class DDGSSearch:
    """`ddgs` text search; every ddgs failure becomes a `SearchError` saying what happened."""

    name = "ddgs"
    instance = ""  # ddgs asks its engines itself: no server of ours

    def __init__(self, region: str = "wt-wt", timeout: float = 10.0):
        self.region = _NO_REGION.get(region.lower(), region.lower())
        self.timeout = timeout

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Up to `max_results` web hits for `query`, with title, URL and snippet."""
        try:
            from ddgs import DDGS
            from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException
        except ImportError:
            raise SearchError(
                "ddgs is not installed — run `pip install ddgs`, or search offline with --search local"
            ) from None
        if not query.strip():
            return []
        try:
            # ddgs takes whole seconds; round up so a 0.5 s setting does not become "no timeout".
            rows = DDGS(timeout=max(1, math.ceil(self.timeout))).text(
                query, region=self.region, max_results=max_results
            )
        except RatelimitException as e:
            raise TransientSearchError(
                f"web search (ddgs) was rate limited ({_brief(e)}) — wait a minute, or use --search searxng or local"
            ) from None
        except TimeoutException as e:
            raise TransientSearchError(
                f"web search (ddgs) timed out after {self.timeout:g}s ({_brief(e)}) — check the network connection, "
                "or use --search local"
            ) from None
        except DDGSException as e:
            if "no results found" in str(e).lower():
                return []  # ddgs raises rather than return an empty list
            # ddgs wraps every engine's failure (HTTP errors, blocked requests) in this one type: may pass.
            raise TransientSearchError(
                f"web search (ddgs) failed: {_brief(e)} — check the network connection, or use --search local"
            ) from None
        except OSError as e:
            raise TransientSearchError(
                f"web search (ddgs) could not reach the internet: {_brief(e)} — check the connection, "
                "or use --search local"
            ) from None
        return web_results(rows or [], "ddgs", "body", max_results, url_key="href")


def _brief(error: BaseException) -> str:
    """A short reason: ddgs errors embed whole URLs and nested debug reprs."""
    text = str(error)
    if "dns" in text.lower() or "name or service not known" in text.lower():
        return "DNS lookup failed: no network?"
    first = text.splitlines()[0] if text else type(error).__name__
    text = re.sub(r"(https?://[^/\s?;)]+)\S*", r"\1", first)  # keep the host, drop paths and queries
    return text[:120]
