"""fetch_page against real HTTP on 127.0.0.1: extraction, caps, content types, encodings, redirects, SSRF."""

from __future__ import annotations

import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from assistant.errors import FetchError
from assistant.web import FetchPolicy, blocked_reason, check_address, extract_html, fetch_page

ARTICLE = """<!doctype html><html><head><title>The Night Watch — Museum notes</title></head>
<body><nav><a href="/">Home</a> | <a href="/shop">Shop</a></nav>
<article><h1>The Night Watch</h1>
<p>The Night Watch is a painting by Rembrandt van Rijn, completed in 1642 at the peak of the Dutch Golden
Age. It shows the militia company of District II under the command of Captain Frans Banninck Cocq.</p>
<p>The painting is on display in the Rijksmuseum in Amsterdam, where it hangs in the Gallery of Honour and is
the best known painting in the collection of the museum.</p></article>
<footer>Copyright the museum</footer></body></html>"""

META_CHARSET = ('<html><head><meta charset="windows-1252"></head><body><p>Crème brûlée — 5€</p></body></html>').encode(
    "cp1252"
)
HUGE_TOTAL = 100_000_000
LOCAL = FetchPolicy(allow_private=True, timeout=5.0)


class Handler(BaseHTTPRequestHandler):
    stop = threading.Event()
    huge_sent: list[int] = []
    huge_done = threading.Event()

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        route = {
            "/article": lambda: self.send(200, ARTICLE.encode(), "text/html; charset=utf-8"),
            "/plain": lambda: self.send(200, b"line one\n\nline two", "text/plain; charset=utf-8"),
            "/binary": lambda: self.send(200, bytes(range(256)) * 64, "text/html"),
            "/pdf": lambda: self.send(200, b"%PDF-1.7\n...", "application/pdf"),
            "/latin1": lambda: self.send(
                200,
                "<html><body><p>Un café à Paris, très agréable et bon marché.</p></body></html>".encode("latin-1"),
                "text/html; charset=utf-8",
            ),
            "/meta-charset": lambda: self.send(200, META_CHARSET, "text/html"),
            "/loop": lambda: self.send(302, b"", "text/plain", Location="/loop"),
            "/moved": lambda: self.send(301, b"", "text/plain", Location="/article"),
            "/to-metadata": lambda: self.send(
                302, b"", "text/plain", Location="http://169.254.169.254/latest/meta-data/"
            ),
            "/to-file": lambda: self.send(302, b"", "text/plain", Location="file:///etc/passwd"),
            "/missing": lambda: self.send(404, b"not here", "text/plain"),
            "/drip": self.drip,
            "/stall": lambda: self.stop.wait(10),
            "/huge": self.huge,
        }.get(self.path)
        if route is None:
            self.send(404, b"", "text/plain")
        else:
            route()

    def drip(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        try:
            for _ in range(60):
                if self.stop.wait(0.5):
                    return
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:
            pass

    def huge(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(HUGE_TOTAL))
        self.end_headers()
        chunk = b"<p>" + b"lorem ipsum dolor sit amet " * 2000 + b"</p>\n"
        sent = 0
        try:
            while sent < HUGE_TOTAL and not self.stop.is_set():
                self.wfile.write(chunk)
                sent += len(chunk)
        except OSError:
            pass
        finally:
            Handler.huge_sent.append(sent)
            Handler.huge_done.set()


@pytest.fixture(scope="module")
def server():
    Handler.stop.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    Handler.stop.set()
    httpd.shutdown()
    httpd.server_close()


class LoopbackOnly(httpx.BaseTransport):
    """Forwards requests to 127.0.0.1 and records every URL; anything else is answered here, never sent."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.seen: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(str(request.url))
        if request.url.host != "127.0.0.1":
            return httpx.Response(200, text="must not be reached", headers={"content-type": "text/plain"})
        return self.inner.handle_request(request)


def test_article_text_and_title_extracted(server):
    page = fetch_page(f"{server}/article", LOCAL)
    assert page.title.startswith("The Night Watch")
    assert "Rembrandt van Rijn, completed in 1642" in page.text
    assert "Rijksmuseum in Amsterdam" in page.text
    assert page.content_type == "text/html"
    assert page.final_url == page.url == f"{server}/article"
    assert not page.truncated
    assert page.bytes == len(ARTICLE.encode())


def test_plain_text_used_as_is(server):
    page = fetch_page(f"{server}/plain", LOCAL)
    assert page.text == "line one\n\nline two"
    assert page.content_type == "text/plain"


def test_slow_drip_fails_within_the_time_cap(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 1.5s"):
        fetch_page(f"{server}/drip", FetchPolicy(allow_private=True, timeout=1.5))
    assert time.monotonic() - start < 5


def test_server_that_never_answers_times_out(server):
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"timed out after 1s"):
        fetch_page(f"{server}/stall", FetchPolicy(allow_private=True, timeout=1.0))
    assert time.monotonic() - start < 4


def test_huge_body_is_truncated_not_read_whole(server):
    Handler.huge_done.clear()
    page = fetch_page(f"{server}/huge", FetchPolicy(allow_private=True, max_bytes=200_000))
    assert page.truncated
    assert page.bytes == 200_000
    assert "lorem ipsum" in page.text
    # The server stops when the client hangs up; kernel buffers hold a few MB at most, far from 100 MB.
    assert Handler.huge_done.wait(5)
    assert Handler.huge_sent[-1] < HUGE_TOTAL // 4


def test_binary_served_as_html_is_refused(server):
    with pytest.raises(FetchError, match="binary data served as text/html"):
        fetch_page(f"{server}/binary", LOCAL)


def test_pdf_content_type_is_refused(server):
    with pytest.raises(FetchError, match="application/pdf"):
        fetch_page(f"{server}/pdf", LOCAL)


def test_latin1_declared_utf8_decodes_without_crash(server):
    page = fetch_page(f"{server}/latin1", LOCAL)
    assert "Paris" in page.text
    assert "café" in page.text


def test_meta_charset_is_honoured(server):
    page = fetch_page(f"{server}/meta-charset", LOCAL)
    assert "Crème brûlée — 5€" in page.text


def test_http_error_status_is_a_fetch_error(server):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_page(f"{server}/missing", LOCAL)


def test_redirect_loop_is_refused(server):
    with pytest.raises(FetchError, match="too many redirects"):
        fetch_page(f"{server}/loop", LOCAL)


def test_redirect_to_local_path_is_followed(server):
    page = fetch_page(f"{server}/moved", LOCAL)
    assert page.url == f"{server}/moved"
    assert page.final_url == f"{server}/article"
    assert "Rembrandt" in page.text


def test_loopback_refused_by_default_and_allowed_when_private_allowed(server):
    with pytest.raises(FetchError, match="loopback"):
        fetch_page(f"{server}/article", FetchPolicy())
    assert "Rembrandt" in fetch_page(f"{server}/article", FetchPolicy(allow_private=True)).text


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/file.txt", "javascript:alert(1)", "data:text/html,<p>hi"]
)
def test_other_schemes_are_refused(url):
    with pytest.raises(FetchError, match="scheme"):
        fetch_page(url, FetchPolicy(allow_private=True))


def test_redirect_to_file_scheme_is_refused(server):
    with pytest.raises(FetchError, match="scheme 'file'"):
        fetch_page(f"{server}/to-file", LOCAL)


def test_redirect_to_metadata_address_is_refused_before_connecting(server):
    transport = LoopbackOnly()
    policy = FetchPolicy(timeout=5.0, allowed_hosts=("127.0.0.1",))  # trust the test server, nothing else
    with httpx.Client(transport=transport) as client, pytest.raises(FetchError, match="link-local"):
        fetch_page(f"{server}/to-metadata", policy, client=client)
    assert transport.seen == [f"{server}/to-metadata"]


def test_redirect_to_metadata_address_is_followed_only_when_private_allowed(server):
    transport = LoopbackOnly()
    with httpx.Client(transport=transport) as client:
        page = fetch_page(f"{server}/to-metadata", FetchPolicy(allow_private=True), client=client)
    assert page.final_url == "http://169.254.169.254/latest/meta-data/"
    assert page.text == "must not be reached"  # answered by the fake transport, never sent


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "non-global"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_blocked_reason(address, reason):
    assert blocked_reason(address) == reason


def test_check_address_resolves_names_and_honours_policy():
    with pytest.raises(FetchError, match="loopback"):
        check_address("localhost", 80, FetchPolicy())
    with pytest.raises(FetchError, match="link-local"):
        check_address("169.254.169.254", 80, FetchPolicy())
    check_address("169.254.169.254", 80, FetchPolicy(allow_private=True))
    check_address("LOCALHOST", 80, FetchPolicy(allowed_hosts=("localhost",)))


def test_connection_refused_is_a_one_line_fetch_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again at once: nothing listens there
    with pytest.raises(FetchError) as info:
        fetch_page(f"http://127.0.0.1:{port}/", LOCAL)
    assert "could not fetch" in str(info.value)
    assert "\n" not in str(info.value)


TAGGED = (
    "<html><head><title>T &amp; U</title><script>var x = 1;</script></head>"
    "<body><div>First line</div><p>Second <b>line</b></p></body></html>"
)


def test_extract_html_falls_back_when_trafilatura_finds_nothing(monkeypatch):
    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *args, **kwargs: None)
    title, text = extract_html(TAGGED)
    assert title == "T & U"
    assert text == "First line\nSecond line"


def test_extract_html_falls_back_when_trafilatura_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "trafilatura", None)  # makes `import trafilatura` raise ImportError
    assert extract_html(TAGGED) == ("T & U", "First line\nSecond line")
