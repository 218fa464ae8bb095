"""A web site on 127.0.0.1 for tests of page fetching: every GET is answered 200 with one HTML page.

with html_site(lambda path: "<html>…</html>", asked) as url:   # url: http://127.0.0.1:PORT; asked: each GET's path
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def html_site(page: Callable[[str], str], asked: list[str] | None = None) -> Iterator[str]:
    """Serve `page(path)` as text/html for every GET, appending each path to `asked`; yields the base URL."""
    paths = asked if asked is not None else []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            paths.append(self.path)
            body = page(self.path).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
