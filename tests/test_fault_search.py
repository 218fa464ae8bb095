"""Fault matrix, search: a SearXNG stand-in on 127.0.0.1 that times out, refuses, rate-limits, fails with 5xx,
finds nothing or answers garbage; ddgs raising (it cannot be pointed at 127.0.0.1, so a fake DDGS class).
Transient faults are retried with backoff and jitter, a bounded number of times within a budget, then the next
backend of the chain (a real SQLite index) answers, and the answer names what it could not reach."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import ddgs
import pytest
from ddgs.exceptions import RatelimitException

from assistant.events import Answer
from assistant.search import FallbackSearch
from assistant.search.base import TransientSearchError
from assistant.search.ddgs_backend import DDGSSearch
from assistant.search.local import LocalIndex, build_index
from assistant.search.retry import Retry
from assistant.search.searxng import SearxngSearch
from assistant.settings import load_settings

HITS = {"results": [{"url": "https://e.org/nw", "title": "The Night Watch", "content": "by Rembrandt"}]}


class Handler(BaseHTTPRequestHandler):
    """The first path segment picks the fault; `seen` counts the requests each one received."""

    seen: Counter[str] = Counter()

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        fault = self.path.strip("/").split("/")[0]
        Handler.seen[fault] += 1
        headers: dict[str, str] = {}
        status, body = 200, json.dumps(HITS)
        if fault == "down":
            status, body = 503, "Service Unavailable"
        elif fault == "limited":
            status, body = 429, "Too Many Requests"
        elif fault == "wait":
            status, body, headers = 429, "slow down", {"Retry-After": "100"}
        elif fault == "flaky" and Handler.seen[fault] <= 2:
            status, body = 429, "Too Many Requests"
        elif fault == "slow":
            time.sleep(1.0)  # the client gives up after 0.3 s
        elif fault == "garbage":
            body = '{"results": [{"url": "https://e.org/1", "tit'  # cut-off JSON
        elif fault == "forbidden":
            status, body = 403, "<html>Forbidden</html>"
        elif fault == "empty":
            body = json.dumps({"results": []})
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())
        except OSError:
            pass  # the client timed out and hung up

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def searx() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def fresh_counts() -> None:
    Handler.seen.clear()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "nw", "title": "The Night Watch", "text": "Rembrandt painted it in 1642."}))
    return build_index([src], tmp_path / "index.db").out


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once the socket closes


class FakeTime:
    """A clock that only moves when the retry sleeps: backoff without waiting, and the waits recorded."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def fast_retry(t: FakeTime, **kw: float) -> Retry:
    return Retry(sleep=t.sleep, clock=t.clock, rng=random.Random(7), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("down", "answered HTTP 503"),
        ("limited", "answered HTTP 429"),
        ("slow", "timed out after 0.3s"),
        ("refused", "unreachable"),
    ],
)
def test_transient_faults_are_retried_a_bounded_number_of_times_then_the_next_backend_answers(
    searx: str, index: Path, closed_port: int, fault: str, reason: str
):
    url = f"http://127.0.0.1:{closed_port}" if fault == "refused" else f"{searx}/{fault}"
    t = FakeTime()
    chain = FallbackSearch([SearxngSearch(url, timeout=0.3), LocalIndex(index)], retry=fast_retry(t, attempts=3))
    out = chain.find("who painted the night watch")
    results = out.results
    assert [(r.id, r.backend) for r in results] == [("nw", "local")]
    assert out.backend == "local"
    (failure,) = out.failures
    assert failure.startswith("searxng: ") and reason in failure and "(3 attempts in" in failure, failure
    if fault != "refused":
        assert Handler.seen[fault] == 3, "exactly `attempts` requests: no retry storm"
    assert len(t.waits) == 2 and t.waits[0] < t.waits[1], t.waits


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("garbage", "did not return JSON"), ("forbidden", "HTTP 403 — enable the json format"), ("empty", None)],
)
def test_faults_that_asking_again_cannot_fix_go_to_the_next_backend_at_once(
    searx: str, index: Path, fault: str, reason: str | None
):
    t = FakeTime()
    chain = FallbackSearch([SearxngSearch(f"{searx}/{fault}", timeout=2), LocalIndex(index)], retry=fast_retry(t))
    out = chain.find("night watch")
    assert [r.backend for r in out.results] == ["local"]
    assert Handler.seen[fault] == 1 and t.waits == []
    if reason is None:  # nothing found is not a failure: nothing to report
        assert out.failures == []
    else:
        assert len(out.failures) == 1 and reason in out.failures[0]


def test_a_flaky_engine_answers_after_real_backoff_with_jitter(searx: str, index: Path):
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        time.sleep(seconds)

    retry = Retry(attempts=3, base=0.2, sleep=sleep)
    chain = FallbackSearch([SearxngSearch(f"{searx}/flaky", timeout=2), LocalIndex(index)], retry=retry)
    out = chain.find("night watch")
    assert [r.url for r in out.results] == ["https://e.org/nw"]
    assert out.backend == "searxng" and out.failures == []
    assert Handler.seen["flaky"] == 3
    assert 0.1 <= waits[0] <= 0.2 <= waits[1] <= 0.4, waits  # base·2^(k-1): its upper half is random


def test_a_retry_after_beyond_the_budget_gives_up_after_one_request(searx: str, index: Path):
    t = FakeTime()
    chain = FallbackSearch(
        [SearxngSearch(f"{searx}/wait", timeout=2), LocalIndex(index)], retry=fast_retry(t, budget=5)
    )
    out = chain.find("night watch")
    assert [r.backend for r in out.results] == ["local"]
    assert Handler.seen["wait"] == 1 and t.waits == []
    assert "asked to wait 100s, beyond the 5s search budget" in out.failures[0]


def test_backoff_doubles_with_jitter_and_stops_at_the_time_budget():
    t = FakeTime()
    calls = []

    def always_down() -> None:
        calls.append(t.now)
        raise TransientSearchError("HTTP 503")

    retry = fast_retry(t, attempts=10, budget=6.0, base=0.5, cap=8.0)
    with pytest.raises(TransientSearchError, match=r"HTTP 503 \(\d attempts in \d\.\ds\)") as info:
        retry.call(always_down)
    assert f"({len(calls)} attempts in" in str(info.value)
    assert 3 <= len(calls) < retry.attempts, "the budget, not the attempt cap, ended it"
    assert len(t.waits) == len(calls) - 1
    for k, wait in enumerate(t.waits, 1):
        full = 0.5 * 2 ** (k - 1)
        assert full / 2 <= wait <= full
    assert sum(t.waits) <= 6.0
    assert len({round(w / (0.5 * 2**k), 3) for k, w in enumerate(t.waits)}) > 1, "jittered, not a fixed schedule"


def test_a_backend_that_failed_every_attempt_is_skipped_for_the_cooldown(searx: str, index: Path):
    t = FakeTime()
    retry = fast_retry(t, attempts=2, cooldown=60)
    chain = FallbackSearch([SearxngSearch(f"{searx}/down", timeout=2), LocalIndex(index)], retry=retry)
    for _ in range(5):  # a batch of questions while the engine is down
        out = chain.find("night watch")
        assert [r.backend for r in out.results] == ["local"]
    assert Handler.seen["down"] == 2, "the first question tried twice; the next four did not knock"
    assert "skipped for 60s more after failing every attempt (SearXNG at" in out.failures[0]
    t.now += 61
    chain.search("night watch")
    assert Handler.seen["down"] == 4, "after the cool-down it is tried again"


def test_a_ddgs_rate_limit_is_retried_then_the_local_index_answers(monkeypatch: pytest.MonkeyPatch, index: Path):
    calls: list[str] = []

    class RateLimitedDDGS:
        def __init__(self, **kwargs: object) -> None:
            pass

        def text(self, query: str, **kwargs: object) -> list[dict[str, str]]:
            calls.append(query)
            raise RatelimitException("https://lite.duckduckgo.com/lite/ 202 Ratelimit")

    monkeypatch.setattr(ddgs, "DDGS", RateLimitedDDGS)
    t = FakeTime()
    chain = FallbackSearch([DDGSSearch(), LocalIndex(index)], retry=fast_retry(t, attempts=3))
    out = chain.find("night watch")
    assert [r.backend for r in out.results] == ["local"]
    assert calls == ["night watch"] * 3
    assert "ddgs: web search (ddgs) was rate limited (https://lite.duckduckgo.com 202 Ratelimit)" in (out.failures[0])


def test_the_answer_names_the_source_it_could_not_reach(searx: str, index: Path, fake_model):
    from assistant.runner import Assistant

    settings = load_settings(
        search="searxng,local",
        searxng_url=f"{searx}/down",
        index=index,
        search_attempts=2,
        loop="single",
        cache_ttl=0,
    )
    fake_model.enqueue("Answer: Rembrandt [1]")
    final = list(Assistant.from_settings(settings, model=fake_model).ask("Who painted The Night Watch?"))[-1]
    assert isinstance(final, Answer)
    assert final.short_answer == "Rembrandt" and [s.id for s in final.sources] == ["nw"]
    assert Handler.seen["down"] == 2, "search_attempts bounds the requests"
    (note,) = [n for n in final.notes if n.startswith("could not reach: ")]
    assert "searxng: SearXNG at" in note and "HTTP 503" in note and "(2 attempts in" in note, final.notes


def test_half_an_emoji_from_an_engine_becomes_a_replacement_character_not_a_crash():
    from assistant.search.base import web_results

    rows = json.loads('[{"url": "https://e.org/a", "title": "Cut \\ud83d", "content": "a \\ud83d\\ude00 b \\udc00"}]')
    (hit,) = web_results(rows, "searxng", "content", 5)
    assert hit.title == "Cut \ufffd" and hit.snippet == "a \U0001f600 b \ufffd"
    json.dumps(hit.title, ensure_ascii=False).encode("utf-8")  # a result file can hold it
