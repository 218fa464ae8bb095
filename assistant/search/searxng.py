"""Web search through a SearXNG instance's JSON API (`GET {base}/search?q=...&format=json`).

    PYTHONPATH=. python -c "from assistant.search.searxng import SearxngSearch; \
        print(SearxngSearch('http://127.0.0.1:8888').search('who painted the night watch'))"

The instance must allow the JSON format (`search.formats: [html, json]` in its settings.yml). Every failure
becomes a `SearchError` that says what went wrong and what to change; those that may pass (timeouts, refused
connections, HTTP 429 and 5xx) are `TransientSearchError`s, which the fallback chain retries with backoff.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from assistant.errors import SearchError
from assistant.search.base import SearchResult, TransientSearchError, web_results

_HINTS = {
    403: "enable the json format in SearXNG's settings.yml (search: formats: [html, json]) and restart it",
    429: "the instance's limiter is throttling you — wait, or set `server: limiter: false` in settings.yml "
    "on a private instance",
    404: "is the URL the instance's root? it should answer at {base}/search",
}


def searxng_language(region: str) -> str:
    """SearXNG's `language` for a ddgs-style region: 'wt-wt' → 'all', 'fr-fr' → 'fr-FR', 'us-en' → 'en-US'."""
    region = region.strip().lower()
    if region in ("", "wt-wt", "all"):
        return "all"
    country, sep, lang = region.partition("-")
    if not sep:
        return region  # already a language, e.g. "de"
    country = {"uk": "gb"}.get(country, country)
    return f"{lang}-{country.upper()}"


def retry_after(header: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (a number of seconds or an HTTP date), or None."""
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class SearxngSearch:
    """A SearXNG instance; `base_url` is its root, e.g. http://127.0.0.1:8888."""

    name = "searxng"

    def __init__(self, base_url: str, region: str = "wt-wt", timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.language = searxng_language(region)
        self.instance, self.region = self.base_url, self.language  # what its cached results are keyed by
        self.timeout = timeout

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Up to `max_results` web hits for `query`, with title, URL and snippet."""
        if not query.strip():
            return []
        url = f"{self.base_url}/search"
        params = {"q": query, "format": "json", "language": self.language}
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=True) as client:
                resp = client.get(url, params=params, headers={"Accept": "application/json"})
        except httpx.TimeoutException:
            raise TransientSearchError(
                f"SearXNG at {self.base_url} timed out after {self.timeout:g}s — is it overloaded? "
                "try again, or use --search ddgs or local"
            ) from None
        except httpx.ConnectError as e:
            raise TransientSearchError(
                f"SearXNG is unreachable at {self.base_url} ({e}) — start it, or fix --searxng-url"
            ) from None
        except httpx.TransportError as e:  # the connection broke mid-answer, a protocol error: may pass
            raise TransientSearchError(
                f"SearXNG request to {self.base_url} failed: {e or type(e).__name__} — check --searxng-url"
            ) from None
        except httpx.HTTPError as e:
            raise SearchError(f"SearXNG request to {self.base_url} failed: {e} — check --searxng-url") from None
        if resp.status_code >= 400:
            hint = _HINTS.get(resp.status_code, "check the instance's logs").format(base=self.base_url)
            message = f"SearXNG at {self.base_url} answered HTTP {resp.status_code} — {hint}"
            if resp.status_code == 429 or resp.status_code >= 500:
                raise TransientSearchError(message, retry_after(resp.headers.get("retry-after")))
            raise SearchError(message)
        return web_results(self._json(resp), "searxng", "content", max_results)

    def _json(self, resp: httpx.Response) -> list[Any]:
        try:
            data = resp.json()
        except ValueError:  # bad JSON or bad UTF-8
            start = resp.text[:60].strip().replace("\n", " ")
            raise SearchError(
                f"SearXNG at {self.base_url} did not return JSON (it began {start!r}) — is this a SearXNG "
                "instance with the json format enabled in settings.yml?"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("results"), list):
            raise SearchError(
                f"SearXNG at {self.base_url} returned JSON without a 'results' list — is --searxng-url the "
                "root of a SearXNG instance?"
            )
        return data["results"]
