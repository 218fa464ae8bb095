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
from collections.abc import Callable
from dataclasses import asdict
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from assistant.errors import BadInput, SearchError
from assistant.search.base import Finder, SearchBackend, SearchOutcome, SearchResult, TransientSearchError
from assistant.search.cache import Cache, search_key
from assistant.search.retry import Breaker, Retry

if TYPE_CHECKING:
    from assistant.settings import Settings

__all__ = [
    "FallbackSearch",
    "SearchBackend",
    "SearchError",
    "SearchOutcome",
    "SearchResult",
    "close_search",
    "engines",
    "make_search",
    "search_outcome",
]


class FallbackSearch:
    """Tries each backend in order and returns the first non-empty results.

    `find` returns a `SearchOutcome`: the results, "backend: why" for every backend that failed on that query
    (so an answer can say which sources could not be reached), the backend that answered, and `notes`: which
    configured backends were skipped when the chain was built, and what a backend (a `Finder`) noted on this query
    (the local index searched with BM25 alone, say). `retry` bounds the attempts
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

    def by_meaning(self) -> FallbackSearch | None:
        """The chain with each backend that can rank by meaning alone doing so (a local index with vectors; see
        `by_meaning` below), the others as they are; None when no backend can."""
        again = [by_meaning(b) for b in self.backends]
        if all(b is None for b in again):
            return None
        backends = [b or old for b, old in zip(again, self.backends, strict=True)]
        chain = FallbackSearch(backends, self.cache, self.notes, self.retry)
        chain.breaker = self.breaker  # a backend that is down is down for both
        return chain

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Results from the first backend that finds any (the `SearchBackend` interface)."""
        return self.find(query, max_results).results

    def find(self, query: str, max_results: int = 5) -> SearchOutcome:
        """Results from the first backend that finds any, and who failed; SearchError only if every one failed."""
        failures: list[str] = []
        notes = list(self.notes)
        for backend in self.backends:
            # Web backends declare where they search (instance, region); a backend without them is keyed by name.
            where = {"instance": getattr(backend, "instance", ""), "region": getattr(backend, "region", "")}
            key = search_key(backend.name, query, max_results, **where)
            results = self._cached(backend, key)
            if results is None:
                skipped = self.breaker.skip(backend.name)
                if skipped:
                    failures.append(f"{backend.name}: {skipped}")
                    continue
                try:
                    outcome = self.retry.call(functools.partial(search_outcome, backend, query, max_results))
                except TransientSearchError as e:
                    self.breaker.failed(backend.name, str(e)[:160])
                    failures.append(f"{backend.name}: {e}")
                    continue
                except SearchError as e:
                    failures.append(f"{backend.name}: {e}")
                    continue
                self.breaker.worked(backend.name)
                results = outcome.results
                notes += [n for n in outcome.notes if n not in notes]
                if results and self.cache is not None and getattr(backend, "cacheable", True):
                    # Empty answers are not cached: a web engine that found nothing may find it later.
                    self.cache.put("search", key, [asdict(r) for r in results])
            if results:
                return SearchOutcome(results[:max_results], failures, backend.name, notes)
        if len(failures) == len(self.backends):
            raise SearchError("every search backend failed: " + "; ".join(failures))
        return SearchOutcome([], failures, None, notes)


def by_meaning(search: SearchBackend | None) -> SearchBackend | None:
    """`search` ranking by meaning alone, for a second search that differs from the first, or None where it cannot
    (a web engine ranks as it ranks; a local index without vectors): the caller then searches deeper instead."""
    view = getattr(search, "by_meaning", None)
    return view() if callable(view) else None


def search_outcome(search: SearchBackend, query: str, max_results: int) -> SearchOutcome:
    """One query to a backend or a fallback chain, as an outcome with its notes (a single backend's failure
    raises)."""
    if isinstance(search, Finder):
        return search.find(query, max_results)
    return SearchOutcome(search.search(query, max_results=max_results), backend=search.name)


class Unavailable(Exception):
    """A configured search backend cannot be used now (no URL, no index file): the chain skips it with a note."""


Factory = Callable[["Settings"], SearchBackend]


def _ddgs(settings: Settings) -> SearchBackend:
    from assistant.search.ddgs_backend import DDGSSearch

    return DDGSSearch(region=settings.region, timeout=settings.fetch_timeout)


def _searxng(settings: Settings) -> SearchBackend:
    from assistant.search.searxng import SearxngSearch

    if not settings.searxng_url:
        raise Unavailable("searxng skipped: no URL — set --searxng-url or ASSISTANT_SEARXNG_URL")
    return SearxngSearch(settings.searxng_url, settings.region, settings.fetch_timeout)


def _local(settings: Settings) -> SearchBackend:
    from assistant.search.local import LocalIndex

    path = settings.index_path()
    if not path.is_file():
        raise Unavailable(
            f"local skipped: index not found: {path} — build one with `assistant index build FILE.jsonl --out {path}`"
        )
    index = LocalIndex(path, retriever=settings.retriever, threads=settings.threads)
    index.check()  # an outdated index stops the run here, not once per question of a batch
    return index


BUILT_IN: dict[str, Factory] = {"ddgs": _ddgs, "searxng": _searxng, "local": _local}
ENTRY_POINTS = "search_assistant.search"  # NAME = "module:make", make(settings) -> SearchBackend


def engines() -> dict[str, Factory]:
    """Every search backend by name: the built-in ones, then those that installed packages register."""
    found: dict[str, Factory] = dict(BUILT_IN)
    for entry in entry_points(group=ENTRY_POINTS):
        found.setdefault(entry.name, _plugin(entry.name, entry.load))
    return found


def _plugin(name: str, load_entry: Callable[[], Factory]) -> Factory:
    def make(settings: Settings) -> SearchBackend:
        try:
            factory = load_entry()
        except Exception as e:  # an ImportError, or anything the plugin's module raises on import
            raise Unavailable(f"{name} skipped: the plugin could not be loaded ({type(e).__name__}: {e})") from None
        return factory(settings)

    return make


def make_search(settings: Settings, cache: Cache | None = None) -> FallbackSearch | None:
    """The chain named by `settings.search`, or None for "none"; skipped backends are noted, not fatal."""
    from assistant.settings import cache_dir

    chain = list(dict.fromkeys(settings.search_chain()))
    known = engines()
    unknown = [n for n in chain if n not in known and n != "none"]
    if unknown:
        raise BadInput(
            f"unknown search backend {unknown[0]!r} — choose from {', '.join([*known, 'none'])} "
            "(comma-separated for a fallback chain, e.g. ddgs,local)"
        )
    if not chain or chain == ["none"]:
        return None
    if "none" in chain:
        raise BadInput(f"--search {settings.search!r}: 'none' cannot be combined with other backends")
    backends: list[SearchBackend] = []
    notes: list[str] = []
    for name in chain:
        try:
            backends.append(known[name](settings))
        except Unavailable as e:
            notes.append(str(e))
    if not backends:
        raise BadInput("no search backend is available: " + "; ".join(notes))
    if cache is None:
        cache = Cache(cache_dir() / "cache.db", settings.cache_ttl)
    retry = Retry(attempts=settings.search_attempts, budget=settings.search_budget)
    return FallbackSearch(backends, cache=cache, notes=notes, retry=retry)


def close_search(search: SearchBackend | None) -> None:
    """Close a backend's connections (a chain closes each of its backends)."""
    inner = search.backends if isinstance(search, FallbackSearch) else [search] if search else []
    for backend in inner:
        close = getattr(backend, "close", None)  # optional: only backends that hold connections have one
        if callable(close):
            close()
