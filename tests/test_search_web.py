"""Web backends without the internet: SearXNG against a real HTTP server on 127.0.0.1 serving canned answers,
and the ddgs wrapper against a fake `ddgs.DDGS` (the real one would reach the network)."""

import json
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import ddgs
import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from assistant.errors import SearchError
from assistant.search.ddgs_backend import DDGSSearch
from assistant.search.searxng import SearxngSearch, searxng_language

ROWS = [
    {
        "url": "https://en.wikipedia.org/wiki/The_Night_Watch",
        "title": "The Night Watch",
        "content": "by Rembrandt",
    },
    {"url": "https://en.wikipedia.org/wiki/The_Night_Watch", "title": "duplicate", "content": "dropped"},
    {"title": "no url", "content": "dropped"},
    "not an object",
    {"url": "https://www.rijksmuseum.nl/en/night-watch", "title": "Operation Night Watch", "content": ""},
    {"url": "https://example.org/3", "title": "", "content": "third"},
]

# path prefix → (status, content type, body); the backend's base URL picks the behaviour
CANNED = {
    "/ok": (200, "application/json", json.dumps({"query": "q", "results": ROWS})),
    "/empty": (200, "application/json", json.dumps({"query": "q", "results": []})),
    "/error": (500, "text/plain", "Internal Server Error"),
    "/limited": (429, "text/plain", "Too Many Requests"),
    "/forbidden": (403, "text/html", "<html>Forbidden</html>"),
    "/garbage": (200, "text/html", "<!DOCTYPE html><html><body>results</body></html>"),
    "/noresults": (200, "application/json", json.dumps({"answers": []})),
    "/notutf8": (200, "application/json", b"\xff\xfe{".decode("latin-1")),
}


class _Handler(BaseHTTPRequestHandler):
    requests: list[tuple[str, dict[str, list[str]]]] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        parts = urlsplit(self.path)
        type(self).requests.append((parts.path, parse_qs(parts.query)))
        prefix = "/" + parts.path.strip("/").split("/")[0]
        if prefix == "/slow":
            time.sleep(0.6)
            prefix = "/ok"
        status, ctype, body = CANNED.get(prefix, (404, "text/plain", "not found"))
        data = body.encode("latin-1" if prefix == "/notutf8" else "utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (the timeout test)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_searxng_maps_results_and_sends_json_format_and_language(server):
    _Handler.requests.clear()
    results = SearxngSearch(f"{server}/ok/", region="fr-fr", timeout=5).search("night watch", max_results=5)
    assert [r.url for r in results] == [
        "https://en.wikipedia.org/wiki/The_Night_Watch",
        "https://www.rijksmuseum.nl/en/night-watch",
        "https://example.org/3",
    ]
    first = results[0]
    assert (first.id, first.title, first.snippet, first.text, first.backend) == (
        first.url,
        "The Night Watch",
        "by Rembrandt",
        "",
        "searxng",
    )
    assert results[2].title == "https://example.org/3"  # an empty title falls back to the URL
    path, params = _Handler.requests[-1]
    assert path == "/ok/search"
    assert params == {"q": ["night watch"], "format": ["json"], "language": ["fr-FR"]}


def test_searxng_respects_max_results(server):
    assert len(SearxngSearch(f"{server}/ok").search("q", max_results=1)) == 1


def test_searxng_empty_results_are_not_an_error(server):
    assert SearxngSearch(f"{server}/empty").search("nothing here") == []


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("/error", r"HTTP 500 — check the instance's logs"),
        ("/limited", r"HTTP 429 — .*limiter"),
        ("/forbidden", r"HTTP 403 — enable the json format in SearXNG's settings.yml"),
        ("/missing", r"HTTP 404 — is the URL the instance's root"),
        ("/garbage", r"did not return JSON \(it began '<!DOCTYPE html>"),
        ("/notutf8", r"did not return JSON"),
        ("/noresults", r"without a 'results' list"),
    ],
)
def test_searxng_failures_say_what_happened_and_what_to_do(server, prefix, expected):
    with pytest.raises(SearchError, match=expected):
        SearxngSearch(f"{server}{prefix}", timeout=5).search("q")


def test_searxng_connection_refused(closed_port):
    with pytest.raises(SearchError, match=r"SearXNG is unreachable at http://127.0.0.1:\d+ .*--searxng-url"):
        SearxngSearch(f"http://127.0.0.1:{closed_port}", timeout=2).search("q")


def test_searxng_timeout(server):
    with pytest.raises(SearchError, match=r"timed out after 0.2s"):
        SearxngSearch(f"{server}/slow", timeout=0.2).search("q")


@pytest.mark.parametrize(
    ("region", "language"),
    [("wt-wt", "all"), ("", "all"), ("fr-fr", "fr-FR"), ("us-en", "en-US"), ("uk-en", "en-GB"), ("de", "de")],
)
def test_searxng_language_from_region(region, language):
    assert searxng_language(region) == language


@pytest.fixture
def fake_ddgs(monkeypatch):
    """A stand-in for `ddgs.DDGS` that records calls and returns `rows` or raises `error`."""

    class FakeDDGS:
        calls: list[dict] = []
        rows: list[dict] = []
        error: Exception | None = None

        def __init__(self, timeout=None, **kwargs):
            self.timeout = timeout

        def text(self, query, region="us-en", max_results=10, **kwargs):
            FakeDDGS.calls.append({"query": query, "region": region, "max_results": max_results, "t": self.timeout})
            if FakeDDGS.error is not None:
                raise FakeDDGS.error
            return FakeDDGS.rows

    monkeypatch.setattr(ddgs, "DDGS", FakeDDGS)
    return FakeDDGS


def test_ddgs_maps_rows_to_results(fake_ddgs):
    fake_ddgs.rows = [
        {
            "title": "The Night Watch - Wikipedia",
            "href": "https://en.wikipedia.org/wiki/Night_Watch",
            "body": "A",
        },
        {"title": "no link", "href": "", "body": "dropped"},
        {"title": "again", "href": "https://en.wikipedia.org/wiki/Night_Watch", "body": "dropped"},
        {"title": "Rijksmuseum", "href": "https://www.rijksmuseum.nl/", "body": "B"},
    ]
    results = DDGSSearch(region="fr-fr", timeout=2.5).search("night watch", max_results=3)
    assert [(r.id, r.url, r.title, r.snippet, r.backend) for r in results] == [
        (
            "https://en.wikipedia.org/wiki/Night_Watch",
            "https://en.wikipedia.org/wiki/Night_Watch",
            "The Night Watch - Wikipedia",
            "A",
            "ddgs",
        ),
        ("https://www.rijksmuseum.nl/", "https://www.rijksmuseum.nl/", "Rijksmuseum", "B", "ddgs"),
    ]
    assert fake_ddgs.calls == [{"query": "night watch", "region": "fr-fr", "max_results": 3, "t": 3}]


def test_ddgs_no_region_becomes_its_default_and_caps_results(fake_ddgs):
    fake_ddgs.rows = [{"title": str(i), "href": f"https://e.org/{i}", "body": ""} for i in range(9)]
    assert len(DDGSSearch(region="wt-wt").search("q", max_results=4)) == 4
    assert fake_ddgs.calls[-1]["region"] == "us-en"  # "wt" would send Wikipedia to wt.wikipedia.org


@pytest.mark.parametrize("error", [DDGSException("No results found."), None])
def test_ddgs_empty_is_an_empty_list(fake_ddgs, error):
    fake_ddgs.rows, fake_ddgs.error = [], error
    assert DDGSSearch().search("zzzz qqqq") == []


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RatelimitException("202 Ratelimit"), r"rate limited \(202 Ratelimit\) — wait a minute"),
        (TimeoutException("timed out"), r"timed out after 10s"),
        (
            DDGSException("https://lite.duckduckgo.com 403"),
            r"failed: https://lite.duckduckgo.com 403 — check",
        ),
        (ConnectionError("Network is unreachable"), r"could not reach the internet: Network is unreachable"),
    ],
)
def test_ddgs_errors_become_search_errors(fake_ddgs, error, expected):
    fake_ddgs.error = error
    with pytest.raises(SearchError, match=expected):
        DDGSSearch(timeout=10).search("q")


def test_ddgs_a_bug_is_not_disguised_as_a_search_error(fake_ddgs):
    fake_ddgs.error = KeyError("href")
    with pytest.raises(KeyError):
        DDGSSearch().search("q")


def test_importing_the_backends_does_not_import_ddgs():
    code = "import sys, assistant.search.ddgs_backend, assistant.search; print('ddgs' in sys.modules)"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env={"PYTHONPATH": str(root)}, capture_output=True, text=True
    )
    assert out.stdout.strip() == "False", out.stderr
