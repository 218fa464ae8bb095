"""The on-disk cache (TTL, corrupt files), the fallback chain (order, failures, caching) and `make_search`."""

import json
import os
import socket
from pathlib import Path

import pytest

from assistant.errors import AssistantError, BadInput, SearchError
from assistant.search import FallbackSearch, make_search
from assistant.search.base import SearchBackend, SearchResult
from assistant.search.cache import Cache
from assistant.search.ddgs_backend import DDGSSearch
from assistant.search.local import LocalIndex, build_index
from assistant.search.searxng import SearxngSearch
from assistant.settings import Settings


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Scripted:
    """A backend that returns or raises what it is told, and counts its calls."""

    def __init__(self, name: str, results=(), error: Exception | None = None, cacheable: bool = True):
        self.name = name
        self.results = list(results)
        self.error = error
        self.cacheable = cacheable
        self.calls: list[tuple[str, int]] = []

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        self.calls.append((query, max_results))
        if self.error is not None:
            raise self.error
        return self.results[:max_results]


def hits(*ids: str) -> list[SearchResult]:
    return [SearchResult(id=i, title=f"T{i}", url=f"https://e.org/{i}", snippet="s", backend="x") for i in ids]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def cache(tmp_path, clock):
    return Cache(tmp_path / "cache.db", ttl=100, clock=clock)


# --- Cache ---


def test_a_value_is_fresh_until_the_ttl_passes(cache, clock):
    cache.put("search", "k", {"a": [1, "é"]})
    clock.now += 100
    assert cache.get("search", "k") == {"a": [1, "é"]}
    clock.now += 1
    assert cache.get("search", "k") is None


def test_kinds_and_keys_are_separate_and_put_replaces(cache):
    cache.put("search", "k", 1)
    cache.put("page", "k", 2)
    cache.put("search", "k", 3)
    assert (cache.get("search", "k"), cache.get("page", "k"), cache.get("search", "other")) == (3, 2, None)


def test_put_refreshes_the_timestamp(cache, clock):
    cache.put("search", "k", "old")
    clock.now += 90
    cache.put("search", "k", "new")
    clock.now += 90
    assert cache.get("search", "k") == "new"


def test_ttl_zero_disables_the_cache_and_writes_nothing(tmp_path):
    off = Cache(tmp_path / "cache.db", ttl=0)
    off.put("search", "k", [1])
    assert off.get("search", "k") is None
    assert not (tmp_path / "cache.db").exists()


def test_clear_forgets_everything(cache):
    cache.put("search", "k", 1)
    cache.clear()
    assert cache.get("search", "k") is None
    cache.put("search", "k", 2)
    assert cache.get("search", "k") == 2


def test_a_value_that_is_not_json_is_a_bug(cache):
    with pytest.raises(TypeError):
        cache.put("search", "k", object())


def test_a_corrupt_file_is_moved_aside_and_rebuilt(tmp_path, clock):
    path = tmp_path / "cache.db"
    path.write_bytes(b"definitely not sqlite " * 200)
    cache = Cache(path, ttl=100, clock=clock)
    assert cache.get("search", "k") is None
    cache.put("search", "k", [1, 2])
    assert cache.get("search", "k") == [1, 2]
    (aside,) = tmp_path.glob("cache.db.corrupt-*")
    assert aside.read_bytes().startswith(b"definitely not sqlite")


def test_a_file_corrupted_while_in_use_is_rebuilt(cache):
    cache.put("search", "k", 1)
    cache.path.write_bytes(b"\x00garbage" * 4096)
    cache.put("search", "k", 2)
    assert cache.get("search", "k") == 2
    assert cache.enabled


@pytest.mark.parametrize("keep", [0.5, 100 / 1_000_000])
def test_a_truncated_file_is_detected_and_rebuilt_and_search_goes_on(tmp_path, clock, keep):
    path = tmp_path / "cache.db"
    full = Cache(path, ttl=100, clock=clock)
    for i in range(200):  # a file of many pages, as after a day of browsing
        full.put("page", f"https://e.org/{i}", {"text": "passage " * 300})
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(max(100, int(size * keep)))  # as left by a crash or a full disk
    web = Scripted("web", hits("1"))
    chain = FallbackSearch([web], cache=Cache(path, ttl=100, clock=clock))
    assert [r.id for r in chain.search("q")] == ["1"], "the search itself is unaffected"
    assert [r.id for r in chain.search("q")] == ["1"] and len(web.calls) == 1, "and cached again in a fresh file"
    assert chain.cache is not None and chain.cache.enabled
    (aside,) = tmp_path.glob("cache.db.corrupt-*")
    assert aside.stat().st_size == max(100, int(size * keep))


def test_a_cache_that_cannot_be_created_turns_itself_off(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = Cache(blocker / "cache.db", ttl=100)
    cache.put("search", "k", 1)
    assert cache.get("search", "k") is None
    assert cache.enabled is False


# --- FallbackSearch ---


def test_the_first_backend_with_results_answers_in_order():
    a, b, c = Scripted("a"), Scripted("b", hits("1", "2")), Scripted("c", hits("3"))
    chain = FallbackSearch([a, b, c])
    assert chain.name == "a→b→c"
    assert isinstance(chain, SearchBackend)
    out = chain.find("q", max_results=5)
    assert [r.id for r in out.results] == ["1", "2"]
    assert (a.calls, b.calls, c.calls) == ([("q", 5)], [("q", 5)], [])
    assert out.backend == "b" and out.failures == []


def test_failures_are_recorded_per_query_and_the_next_backend_answers():
    down = Scripted("ddgs", error=SearchError("web search (ddgs) was rate limited"))
    chain = FallbackSearch([down, Scripted("local", hits("1"))])
    out = chain.find("q")
    assert [r.id for r in out.results] == ["1"]
    assert out.failures == ["ddgs: web search (ddgs) was rate limited"]
    down.error = None
    down.results = hits("9")
    out = chain.find("another")
    assert [r.id for r in out.results] == ["9"]
    assert out.failures == [] and out.backend == "ddgs"


def test_every_backend_failing_raises_with_every_reason():
    chain = FallbackSearch([Scripted("a", error=SearchError("boom")), Scripted("b", error=SearchError("bang"))])
    with pytest.raises(SearchError, match="every search backend failed: a: boom; b: bang"):
        chain.search("q")


def test_nothing_found_with_some_failures_is_an_empty_answer_not_an_error():
    chain = FallbackSearch([Scripted("a", error=SearchError("down")), Scripted("b")])
    out = chain.find("q")
    assert out.results == []
    assert out.failures == ["a: down"] and out.backend is None


def test_a_bug_in_a_backend_is_not_swallowed():
    chain = FallbackSearch([Scripted("a", error=RuntimeError("bug")), Scripted("b", hits("1"))])
    with pytest.raises(RuntimeError):
        chain.search("q")


def test_a_cache_hit_does_not_call_the_backend(cache, clock):
    web = Scripted("web", hits("1", "2"))
    chain = FallbackSearch([web], cache=cache)
    first = chain.search("night watch", max_results=2)
    again = FallbackSearch([web], cache=cache).search("night watch", max_results=2)
    assert again == first and len(web.calls) == 1
    chain.search("night watch", max_results=1)  # a different key
    assert len(web.calls) == 2
    clock.now += 101  # stale
    chain.search("night watch", max_results=2)
    assert len(web.calls) == 3


def test_empty_answers_and_uncacheable_backends_are_not_cached(cache):
    empty, local = Scripted("web"), Scripted("local", hits("1"), cacheable=False)
    chain = FallbackSearch([empty, local], cache=cache)
    chain.search("q")
    chain.search("q")
    assert (len(empty.calls), len(local.calls)) == (2, 2)


def test_a_cached_answer_is_used_before_a_failing_backend_is_retried(cache):
    web = Scripted("web", hits("1"))
    chain = FallbackSearch([web, Scripted("local", hits("9"))], cache=cache)
    chain.search("q")
    web.error = SearchError("offline now")
    out = chain.find("q")
    assert [r.id for r in out.results] == ["1"]
    assert out.failures == []


# --- make_search ---


@pytest.fixture
def home(tmp_path, monkeypatch):
    for var in [v for v in os.environ if v.startswith("ASSISTANT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def small_index(tmp_path) -> Path:
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "nw", "title": "The Night Watch", "text": "Rembrandt painted it in 1642."}))
    build_index([src], tmp_path / "index.db")
    return tmp_path / "index.db"


@pytest.mark.parametrize("chain", ["none", "", " , "])
def test_none_or_an_empty_chain_means_no_search(home, chain):
    assert make_search(Settings(search=chain)) is None


@pytest.mark.parametrize("chain", ["bing", "ddgs,bing"])
def test_an_unknown_backend_lists_the_valid_names(home, chain):
    with pytest.raises(AssistantError, match="unknown search backend 'bing' — choose from ddgs, searxng, local, none"):
        make_search(Settings(search=chain))


def test_none_cannot_be_combined(home):
    with pytest.raises(AssistantError, match="'none' cannot be combined"):
        make_search(Settings(search="ddgs,none"))


def test_the_full_chain_in_order_with_the_settings_cache(home, small_index):
    s = Settings(search="ddgs, searxng,local,ddgs", searxng_url="http://127.0.0.1:1", index=small_index, region="de-de")
    chain = make_search(s)
    assert chain.name == "ddgs→searxng→local"
    assert [type(b) for b in chain.backends] == [DDGSSearch, SearxngSearch, LocalIndex]
    assert chain.backends[1].language == "de-DE"
    assert chain.notes == []
    assert chain.cache.path == home / "cache" / "cache.db" and chain.cache.ttl == s.cache_ttl


def test_unusable_backends_are_skipped_with_a_note(home, small_index):
    chain = make_search(Settings(search="searxng,ddgs,local", index=small_index.parent / "missing.db"))
    assert chain.name == "ddgs"
    assert chain.notes[0].startswith("searxng skipped: no URL — set --searxng-url")
    assert "local skipped: index not found: " in chain.notes[1]
    assert "assistant index build FILE.jsonl --out" in chain.notes[1]


@pytest.mark.parametrize("chain", ["searxng", "searxng,local"])
def test_nothing_left_to_search_is_an_error(home, tmp_path, chain):
    with pytest.raises(BadInput, match="no search backend is available: searxng skipped: no URL"):
        make_search(Settings(search=chain, index=tmp_path / "missing.db"))


def test_an_unreachable_searxng_falls_back_to_the_local_index(home, small_index):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chain = make_search(Settings(search="searxng,local", searxng_url=f"http://127.0.0.1:{port}", index=small_index))
    out = chain.find("who painted the night watch")
    results = out.results
    assert [(r.id, r.backend) for r in results] == [("nw", "local")]
    assert len(out.failures) == 1
    assert out.failures[0].startswith(f"searxng: SearXNG is unreachable at http://127.0.0.1:{port}")


def test_a_search_is_cached_per_region_and_instance_not_only_per_query(home, cache, monkeypatch):
    """A routed fr-fr search must not be answered from a cached wt-wt one, nor one SearXNG from another's."""
    calls: list[str] = []

    def ddgs(self, query: str, max_results: int = 5) -> list[SearchResult]:
        calls.append(f"ddgs {self.region}")
        return hits(f"ddgs {self.region}")

    def searxng(self, query: str, max_results: int = 5) -> list[SearchResult]:
        calls.append(f"{self.base_url} {self.language}")
        return hits(f"{self.base_url} {self.language}")

    monkeypatch.setattr(DDGSSearch, "search", ddgs)
    monkeypatch.setattr(SearxngSearch, "search", searxng)

    def first_hit(**settings: str) -> str:
        return make_search(Settings(**settings), cache).search("la tour eiffel")[0].id

    assert first_hit(search="ddgs", region="wt-wt") == "ddgs us-en"
    assert first_hit(search="ddgs", region="fr-fr") == "ddgs fr-fr"
    a, b = "http://a.example:8888", "http://b.example:8888"
    assert first_hit(search="searxng", searxng_url=a) == f"{a} all"
    assert first_hit(search="searxng", searxng_url=b) == f"{b} all"
    assert first_hit(search="searxng", searxng_url=a, region="fr-fr") == f"{a} fr-FR"
    assert len(calls) == 5
    assert first_hit(search="ddgs", region="fr-fr") == "ddgs fr-fr"  # the same search again: from the cache
    assert first_hit(search="searxng", searxng_url=b + "/") == f"{b} all"
    assert len(calls) == 5
