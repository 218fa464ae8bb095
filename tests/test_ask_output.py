"""What `ask` prints: `--events` (one JSON line per event, as it happens), `-q`, `-v`, warnings through logging,
and `assistant --version`, through the real CLI.

The scripted fake model answers in this process, over a real SQLite index of tests/data; the streaming test runs
`assistant ask --events` in a subprocess against an OpenAI-compatible server on 127.0.0.1 that holds its answer
until the test has read the events before it.
"""

from __future__ import annotations

import json
import os
import re
import select
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

import assistant
from assistant.cli import app
from assistant.models.base import Completion, GenerationOptions, Message
from tests.conftest import FakeModel

COLOMBIA = "What is the capital of Colombia?"
runner = CliRunner()


@pytest.fixture
def model(loaded_model: FakeModel) -> FakeModel:
    """conftest's `loaded_model`, under the name these tests use."""
    return loaded_model


def ask(index: Path, *args: str) -> list[str]:
    return ["ask", COLOMBIA, "--model", "smollm2-135m", "--search", "local", "--index", str(index), *args]


def test_events_are_json_lines_in_the_order_they_happen_and_the_last_is_the_answer(model: FakeModel, index: Path):
    model.enqueue("Answer: Bogotá [1]")
    result = runner.invoke(app, ask(index, "--events"))
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["step", "tool_call", "tool_result"] and kinds[-1] == "answer", kinds
    assert set(kinds[3:-1]) == {"token"}, kinds
    call, found, answer = events[1], events[2], events[-1]
    assert call == {
        "type": "tool_call",
        "step": 1,
        "name": "web_search",
        "arguments": {"query": COLOMBIA},
        "by": "policy",
    }
    assert found["summary"].endswith("passages") and found["sources"][0]["title"] == "Bogotá", found
    assert "text" not in found["sources"][0], "sources are shown as the answer shows them, without the full text"
    assert "".join(e["text"] for e in events if e["type"] == "token") == "Answer: Bogotá [1]"
    assert answer["short_answer"] == "Bogotá" and answer["grounded"] is True and answer["sources"][0]["n"] == 1


class Held(BaseHTTPRequestHandler):
    """A chat-completions server whose answer waits for `release` (and no tokenize endpoint)."""

    release = threading.Event()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.path.endswith("/chat/completions"):  # a tokenize endpoint: none here, the client estimates
            self.send_error(404)
            return
        Held.release.wait(120)  # the test releases it: the timeout only ends a test that failed
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        delta = {"choices": [{"index": 0, "delta": {"content": "Bogotá [1]"}, "finish_reason": "stop"}]}
        usage = {"choices": [], "usage": {"prompt_tokens": 50, "completion_tokens": 3}}
        self.wfile.write(f"data: {json.dumps(delta)}\n\ndata: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def held_server() -> Iterator[str]:
    Held.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Held)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    Held.release.set()
    server.shutdown()
    server.server_close()


def _line(proc: subprocess.Popen[bytes]) -> dict:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    assert ready, "no event line within 120 s: the events are not written as they happen"
    return json.loads(proc.stdout.readline())


def test_events_arrive_while_the_answer_is_still_being_written(held_server: str, index: Path, isolated: Path):
    args = ["ask", COLOMBIA, "--events", "--backend", "openai", "--base-url", held_server]
    args += ["--search", "local", "--index", str(index), "--cache-ttl", "0"]
    env = {**os.environ, "ASSISTANT_HOME": str(isolated)}
    with subprocess.Popen([sys.executable, "-m", "assistant", *args], stdout=subprocess.PIPE, env=env) as proc:
        try:
            first = [_line(proc)["type"] for _ in range(3)]  # the model has not answered yet
            assert first == ["step", "tool_call", "tool_result"] and proc.poll() is None
            Held.release.set()
            rest = [json.loads(line) for line in proc.stdout.read().splitlines()]  # type: ignore[union-attr]
        finally:
            Held.release.set()
    assert proc.returncode == 0 and rest[-1]["type"] == "answer" and rest[-1]["short_answer"] == "Bogotá", rest


def test_quiet_prints_the_answer_only(model: FakeModel, index: Path):
    model.enqueue("Answer: Bogotá [1]")
    result = runner.invoke(app, ask(index, "-q"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Bogotá [1]\n" and result.stderr == "", result.output


def test_verbose_shows_steps_and_timings_on_stderr_and_leaves_stdout_alone(model: FakeModel, index: Path):
    model.enqueue("Answer: Bogotá [1]")
    quiet = runner.invoke(app, ask(index))
    model.enqueue("Answer: Bogotá [1]")
    verbose = runner.invoke(app, ask(index, "-v"))
    assert quiet.exit_code == verbose.exit_code == 0, verbose.output
    log = verbose.stderr
    assert "model fake loaded in " in log and "step 1: web_search(query='What is the capital" in log, log
    assert "by policy: 5 passages in " in log and "generation: " in log and "prefill 0.01s" in log, log
    assert "answered in " in log and "from sources" in log, log
    assert "assistant.runner:" in log, "each line names where it comes from"
    seconds = re.compile(r"\d+\.\d+s")  # the footer's timings differ from run to run
    same = seconds.sub("N", verbose.stdout) == seconds.sub("N", quiet.stdout)
    assert "loaded in" not in quiet.stderr and same, "-v adds to stderr only"


def test_verbose_and_quiet_together_are_bad_input(model: FakeModel, index: Path):
    result = runner.invoke(app, ask(index, "-v", "-q"))
    assert result.exit_code == 2 and "not both" in result.output, result.output


class Warns(FakeModel):
    """A fake whose library warns while it generates, as transformers does."""

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        warnings.warn("generation on CPU is slow (test warning)", UserWarning, stacklevel=1)
        return super().stream(messages, options)


def test_a_library_warning_goes_through_logging_as_one_line(index: Path, monkeypatch: pytest.MonkeyPatch):
    fake = Warns().enqueue("Answer: Bogotá [1]")
    monkeypatch.setattr("assistant.runner.load_model", lambda settings, spec=None: fake)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        result = runner.invoke(app, ask(index))
    assert result.exit_code == 0, result.output
    assert "warning: UserWarning: generation on CPU is slow (test warning)\n" in result.stderr, result.stderr
    assert "warnings.warn(" not in result.stderr, "not the raw source line Python prints"


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"search-assistant {assistant.__version__}\n", result.output


def test_the_second_look_is_the_presets_and_can_be_turned_on_or_off_from_the_command_line(
    model: FakeModel, index: Path
):
    # "Zorbograd" is in no source: below the threshold, so the loop looks again when a second look is on
    model.enqueue("Answer: Zorbograd [1]", "Answer: Zorbograd [2]")
    looked = runner.invoke(app, ask(index, "-q", "--max-results", "2", "--second-look"))
    assert looked.exit_code != 0 and len(model.history) == 2, looked.output
    for off in ([], ["--no-second-look"]):  # SmolLM2's preset takes none (measured); the switch says so too
        model.history.clear()
        model.enqueue("Answer: Zorbograd [1]")
        once = runner.invoke(app, ask(index, "-q", "--max-results", "2", *off))
        assert once.exit_code == looked.exit_code and len(model.history) == 1, once.output
