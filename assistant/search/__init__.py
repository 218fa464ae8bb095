"""Search backends and the fallback chain the loop uses: `make_search(settings).search(query)`.

    PYTHONPATH=. ASSISTANT_SEARCH=local python -c "from assistant.settings import load_settings; \
        from assistant.search import make_search; print(make_search(load_settings()).search('night watch'))"

`settings.search` names the chain ("ddgs,local": the web first, the local index when the web fails or finds
nothing). Web results are cached on disk for `cache_ttl` seconds; the local index is not (it is as fast).
A backend that fails in a way that may pass (timeout, refused connection, HTTP 429/5xx) is retried with
backoff and jitter, at most `search_attempts` times within `search_budget` seconds, then skipped for a
cool-down (assistant/search/retry.py); the next backend of the chain answers meanwhile.
"""

from __future__ import annotations

import functools
from dataclasses import asdict
from typing import TYPE_CHECKING

from assistant.errors import AssistantError, SearchError
from assistant.search.base import SearchBackend, SearchResult, TransientSearchError
from assistant.search.cache import Cache, search_key
from assistant.search.retry import Breaker, Retry

if TYPE_CHECKING:
    from assistant.settings import Settings

__all__ = ["BACKENDS", "FallbackSearch", "SearchBackend", "SearchError", "SearchResult", "make_search"]

BACKENDS = ("ddgs", "searxng", "local", "none")


class FallbackSearch:
    """Tries each backend in order and returns the first non-empty results.

    After each `search`, `last_failures` lists "backend: why" for every backend that failed on that query
    (so an answer can say which sources could not be reached) and `last_backend` names the one that answered.
    `notes` says which configured backends were skipped when the chain was built. `retry` bounds the attempts
    per backend and query; a backend that failed every attempt is skipped for `retry.cooldown` seconds.
    """

    def __init__(
        self,
        backends: list[SearchBackend],
        cache: Cache | None = None,
        notes: list[str] | None = None,
        retry: Retry | None = None,
    ):
        if not backends:
            raise SearchError("no search backend to try — set --search to ddgs, searxng or local")
        self.backends = list(backends)
        self.cache = cache
        self.notes = list(notes or [])
        self.retry = retry or Retry()
        self.breaker = Breaker(self.retry)
        self.name = "→".join(b.name for b in self.backends)
        self.last_failures: list[str] = []
        self.last_backend: str | None = None

    def _cached(self, backend: SearchBackend, key: str) -> list[SearchResult] | None:
        if self.cache is None or not getattr(backend, "cacheable", True):
            return None
        rows = self.cache.get("search", key)
        if not isinstance(rows, list):
            return None
        try:
            return [SearchResult(**r) for r in rows]
        except TypeError:  # written by an older SearchResult; just search again
            return None

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Results from the first backend that finds any; SearchError only if every backend failed."""
        self.last_failures = []
        self.last_backend = None
        for backend in self.backends:
            # Web backends declare where they search (instance, region); a backend without them is keyed by name.
            where = {"instance": getattr(backend, "instance", ""), "region": getattr(backend, "region", "")}
            key = search_key(backend.name, query, max_results, **where)
            results = self._cached(backend, key)
            if results is None:
                skipped = self.breaker.skip(backend.name)
                if skipped:
                    self.last_failures.append(f"{backend.name}: {skipped}")
                    continue
                try:
                    results = self.retry.call(functools.partial(backend.search, query, max_results=max_results))
                except TransientSearchError as e:
                    self.breaker.failed(backend.name, str(e)[:160])
                    self.last_failures.append(f"{backend.name}: {e}")
                    continue
                except SearchError as e:
                    self.last_failures.append(f"{backend.name}: {e}")
                    continue
                self.breaker.worked(backend.name)
                if results and self.cache is not None and getattr(backend, "cacheable", True):
                    # Empty answers are not cached: a web engine that found nothing may find it later.
                    self.cache.put("search", key, [asdict(r) for r in results])
            if results:
                self.last_backend = backend.name
                return results[:max_results]
        if len(self.last_failures) == len(self.backends):
            raise SearchError("every search backend failed: " + "; ".join(self.last_failures))
        return []


def make_search(settings: Settings, cache: Cache | None = None) -> FallbackSearch | None:
    """The chain named by `settings.search`, or None for "none"; skipped backends are noted, not fatal."""
    from assistant.search.ddgs_backend import DDGSSearch
    from assistant.search.local import LocalIndex
    from assistant.search.searxng import SearxngSearch
    from assistant.settings import cache_dir

    chain = list(dict.fromkeys(settings.search_chain()))
    unknown = [n for n in chain if n not in BACKENDS]
    if unknown:
        raise AssistantError(
            f"unknown search backend {unknown[0]!r} — choose from {', '.join(BACKENDS)} "
            "(comma-separated for a fallback chain, e.g. ddgs,local)"
        )
    if not chain or chain == ["none"]:
        return None
    if "none" in chain:
        raise AssistantError(f"--search {settings.search!r}: 'none' cannot be combined with other backends")
    backends: list[SearchBackend] = []
    notes: list[str] = []
    for name in chain:
        if name == "ddgs":
            backends.append(DDGSSearch(region=settings.region, timeout=settings.fetch_timeout))
        elif name == "searxng":
            if settings.searxng_url:
                backends.append(SearxngSearch(settings.searxng_url, settings.region, settings.fetch_timeout))
            else:
                notes.append("searxng skipped: no URL — set --searxng-url or ASSISTANT_SEARXNG_URL")
        elif name == "local":
            path = settings.index_path()
            if path.is_file():
                backends.append(LocalIndex(path))
            else:
                notes.append(
                    f"local skipped: index not found: {path} — build one with "
                    f"`assistant index build FILE.jsonl --out {path}`"
                )
    if not backends:
        raise SearchError("no search backend is available: " + "; ".join(notes))
    if cache is None:
        cache = Cache(cache_dir() / "cache.db", settings.cache_ttl)
    retry = Retry(attempts=settings.search_attempts, budget=settings.search_budget)
    return FallbackSearch(backends, cache=cache, notes=notes, retry=retry)
