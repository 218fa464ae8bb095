"""A scripted OpenAI-compatible model server on 127.0.0.1: every chat completion waits `delay` seconds (a model
server's time to first token), then streams `reply` one word per `token_delay`. It serves any number of requests
at once and counts them, which a real small-model server cannot do on a CPU (llama-cpp-python's server answers
one at a time; vLLM needs a GPU). tests/test_serve.py and bench/serve_*.py put `assistant serve --backend openai`
in front of it.

    python -m tests.scripted_openai --port 8000 --delay 0.5      # from the repository root; Ctrl-C stops
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ScriptedServer(ThreadingHTTPServer):
    """The server, with what it saw: requests answered, the most served at once, streams the client cut."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, port: int = 0, delay: float = 0.5, reply: str = "Bogotá [1]", token_delay: float = 0.0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.delay, self.reply, self.token_delay = delay, reply, token_delay
        self.lock = threading.Lock()
        self.active = self.most = self.answered = self.cut = 0
        self.bodies: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        """The base URL clients pass as --base-url."""
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    @contextlib.contextmanager
    def running(self) -> Iterator[ScriptedServer]:
        """Serve in a thread for the block's length."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ScriptedServer
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        s = self.server
        with s.lock:
            s.bodies.append(body)
            s.active += 1
            s.most = max(s.most, s.active)
        try:
            time.sleep(s.delay)
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            words = s.reply.split(" ")
            for i, word in enumerate(words):
                self._event({"choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word}}]})
                time.sleep(s.token_delay)
            self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            self._event({"choices": [], "usage": {"prompt_tokens": 100, "completion_tokens": len(words)}})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            with s.lock:
                s.answered += 1
        except (BrokenPipeError, ConnectionResetError):
            with s.lock:
                s.cut += 1
        finally:
            with s.lock:
                s.active -= 1
        self.close_connection = True

    def _event(self, data: dict[str, Any]) -> None:
        self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay", type=float, default=0.5, help="seconds before the first token")
    parser.add_argument("--reply", default="Bogotá [1]")
    args = parser.parse_args()
    server = ScriptedServer(args.port, args.delay, args.reply)
    print(f"scripted OpenAI-compatible server on {server.url} (delay {args.delay}s)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
