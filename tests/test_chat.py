"""`assistant chat` through a real pseudo-terminal (pexpect), against a scripted OpenAI-compatible server.

The chat runs as a subprocess (`python -m assistant chat --backend openai --base-url ...`), so the model is a
small HTTP server in this process that replays scripted replies word by word and records every request: what
the chat sent the model (earlier turns, sources) is asserted from there. Its tokenizer endpoint counts one
token per character and it refuses a prompt that overflows its 4096-token window, as real servers do. The
search is a real local index built from tests/data. One session runs the real bundled SmolLM2.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pexpect
import pyte
import pytest

from tests.conftest import restore_sigint

DATA = Path(__file__).parent / "data"
WINDOW = 4096
PROMPT = re.compile(r"\x1b\[\?2004h.*?>.*?\x1b\[\?25h")


@dataclass
class Script:
    """What the scripted model says next, and what it was sent."""

    replies: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    overflows: int = 0
    cut: int = 0  # streams the client hung up on

    def user_turns(self, n: int = -1) -> list[str]:
        """The user messages of the n-th chat request (the last by default)."""
        return [m["content"] for m in self.requests[n]["messages"] if m["role"] == "user"]


def _sse(data: Any) -> bytes:
    return f"data: {json.dumps(data) if not isinstance(data, str) else data}\n\n".encode()


class Model(BaseHTTPRequestHandler):
    """/v1/chat/completions streams the next scripted reply (a reply starting "SLOW" streams slowly);
    /extras/tokenize/count counts characters."""

    script: Script

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/extras/tokenize/count":
            self._json(200, {"count": len(body.get("input", ""))})
        elif self.path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._json(404, {"error": {"message": "not found"}})

    def _chat(self, body: dict[str, Any]) -> None:
        script = self.server.script  # type: ignore[attr-defined]
        script.requests.append(body)
        used = sum(len(m["content"]) + 8 for m in body["messages"]) + body.get("max_tokens", 0)
        if used > WINDOW:
            script.overflows += 1
            self._json(400, {"error": {"message": f"context overflow: {used} > {WINDOW} tokens"}})
            return
        reply = script.replies.pop(0) if script.replies else "I do not know."
        slow = reply.startswith("SLOW")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            for i, word in enumerate(reply.split(" ")):
                chunk = {"choices": [{"index": 0, "delta": {"content": word if i == 0 else " " + word}}]}
                self.wfile.write(_sse(chunk))
                self.wfile.flush()
                time.sleep(0.3 if slow else 0.01)
            self.wfile.write(_sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
            self.wfile.write(_sse("[DONE]"))
        except (BrokenPipeError, ConnectionResetError):  # the chat stopped listening (Ctrl-C)
            script.cut += 1

    def _json(self, status: int, data: Any) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model() -> Iterator[tuple[str, Script]]:
    """The scripted server's base URL and its script."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Model)
    server.script = Script()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.script  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def chat_args(url: str, index: Path) -> list[str]:
    return [
        "-m",
        "assistant",
        "chat",
        "--backend",
        "openai",
        "--base-url",
        url,
        "--search",
        "local",
        "--index",
        str(index),
    ]


def env(**more: str) -> dict[str, str]:
    """The test's environment (ASSISTANT_HOME isolated) plus a single-step loop and no terminal CPR probing."""
    base = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    return {**base, "ASSISTANT_LOOP": "single", "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm-256color", **more}


class Session:
    """A chat in a pseudo-terminal whose output drives a terminal emulator (pyte): `screen()` is what a user
    would see, scrolled-off lines included; `raw` is every byte as it came."""

    ROWS, COLUMNS = 40, 110

    def __init__(self, args: list[str], **environ: str):
        self.raw: list[str] = []
        self.terminal = pyte.HistoryScreen(self.COLUMNS, self.ROWS, history=10_000)
        self.stream = pyte.Stream(self.terminal)
        self.child = pexpect.spawn(
            sys.executable,
            args,
            env=env(**environ),
            encoding="utf-8",
            dimensions=(self.ROWS, self.COLUMNS),
            timeout=30,
            preexec_fn=restore_sigint,
        )
        self.child.logfile_read = self  # type: ignore[assignment]
        self.prompt()

    def write(self, text: str) -> None:  # pexpect's logfile interface
        self.raw.append(text)
        self.stream.feed(text)

    def flush(self) -> None:
        pass

    def prompt(self) -> None:
        """Wait for prompt_toolkit's prompt: bracketed paste on, the ">" drawn, the cursor shown."""
        self.child.expect(PROMPT)

    def say(self, line: str) -> None:
        """Type a line and wait until the chat is back at its prompt."""
        self.child.sendline(line)
        self.prompt()

    def screen(self) -> str:
        scrolled = ["".join(line[x].data for x in range(self.COLUMNS)) for line in self.terminal.history.top]
        lines = [line.rstrip() for line in scrolled + list(self.terminal.display)]
        while lines and not lines[-1]:
            lines.pop()
        return "\n".join(lines)

    def end(self) -> int:
        """Ctrl-D; the exit status."""
        self.child.sendeof()
        self.child.expect(pexpect.EOF)
        self.child.close()
        return self.child.exitstatus


def test_an_answer_streams_with_its_steps_and_sources(model, index):
    url, script = model
    script.replies += ["Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.say("What is the capital of Colombia?")
    assert s.end() == 0, s.screen()
    screen = s.screen()
    assert "search What is the capital of Colombia?" in screen, screen
    assert re.search(r"\d results \(\d+\.\ds\): Bogotá", screen), screen
    assert "Sources" in screen and "[1] Bogotá — triviaqa-19" in screen, screen
    assert screen.splitlines().count("Bogotá [1]") == 1, "the streamed draft gave way to the final answer"
    sent = script.user_turns()[-1]
    assert "<sources untrusted>" in sent and "Question: What is the capital of Colombia?" in sent


def run_cli(*args: str, stdin: str = "", **environ: str) -> subprocess.CompletedProcess[str]:
    """The CLI without a terminal: piped stdin and stdout."""
    return subprocess.run(
        [sys.executable, "-m", "assistant", *args], input=stdin, capture_output=True, text=True, env=env(**environ)
    )


def test_history_lists_and_shows_a_finished_chat(model, index):
    url, script = model
    script.replies += ["Bogotá [1]", "Humber [1]"]
    s = Session(chat_args(url, index))
    s.say("What is the capital of Colombia?")
    s.say("The rivers Trent and Ouse flow into which estuary?")
    assert s.end() == 0, s.screen()
    listing = run_cli("history")
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "What is the capital" in line)
    assert re.search(r"\b1\b.*\b2\b.*What is the capital of Colombia\?", row), listing.stdout
    shown = run_cli("history", "1")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "## What is the capital of Colombia?" in text and "Bogotá [1]" in text, text
    assert "- [1] Bogotá (triviaqa-19" in text and "## The rivers Trent and Ouse" in text, text
    assert text.index("Bogotá [1]") < text.index("Humber [1]")
    missing = run_cli("history", "7")
    assert missing.returncode == 2 and "no conversation 7" in missing.stderr, missing.stderr


def test_a_follow_up_sends_earlier_turns_and_searches_a_standalone_query(model, index):
    url, script = model
    script.replies += ["Bogotá [1]\nExplanation: Bogotá is the capital [1].", "About 7 million [1]"]
    s = Session(chat_args(url, index))
    s.say("What is the capital of Colombia?")
    s.say("and how many people live there?")
    assert s.end() == 0, s.screen()
    assert "search how many people live there? Bogotá capital colombia" in s.screen(), s.screen()
    roles = [m["role"] for m in script.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"], roles
    earlier = script.requests[-1]["messages"][1:3]
    assert earlier[0]["content"] == "What is the capital of Colombia?"
    assert earlier[1]["content"] == "Bogotá Bogotá is the capital.", "earlier citations are removed"
    assert "Question: and how many people live there?" in script.user_turns()[-1]
    assert [m["role"] for m in script.requests[0]["messages"]] == ["system", "user"], "the first turn has no history"


def test_help_sources_and_unknown_commands(model, index):
    url, script = model
    script.replies += ["Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.say("/sources")
    s.say("/help")
    s.say("What is the capital of Colombia?")
    s.say("/sources")
    s.say("/frobnicate")
    s.child.sendline("/exit")
    s.child.expect(pexpect.EOF)
    s.child.close()
    assert s.child.exitstatus == 0, s.screen()
    screen = s.screen()
    assert "no answer yet" in screen
    for command in ("/help", "/sources", "/search", "/model", "/lang", "/retry", "/reset", "/save", "/exit"):
        assert re.search(rf"^\s+{command}\b", screen, re.M), command
    after = screen.split("> /sources")[-1]
    assert "[1] Bogotá — triviaqa-19" in after and "is the capital and largest city of Colombia" in after, after
    assert "unknown command /frobnicate — /help lists the commands" in screen
    assert len(script.requests) == 1, "slash commands never reach the model"


def test_search_off_on_and_another_backend(model, index):
    url, script = model
    script.replies += ["Bogotá", "Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.say("/search off")
    s.say("What is the capital of Colombia?")
    s.say("/search bing")
    s.say("/search on")
    s.say("/search none")
    s.say("/search on")
    s.say("/search local")
    s.say("What is the capital of Colombia?")
    assert s.end() == 0, s.screen()
    screen = s.screen()
    closed, searched = (script.user_turns(i)[-1] for i in (0, 1))
    assert "<sources" not in closed and "Reply with only the answer, in a few words." in closed, closed
    assert "<sources untrusted>" in searched, searched
    assert "search: local (off)" in screen and "unknown search backend 'bing'" in screen, screen
    assert "search: none" in screen and "no search backend is set" in screen, screen
    assert screen.count("search What is the capital of Colombia?") == 1, "only the second question searched"


def test_model_switch_keeps_the_conversation_and_lang_is_a_setting(model, index):
    url, script = model
    script.replies += ["Bogotá [1]", "Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.say("What is the capital of Colombia?")
    s.say("/model other-model")
    s.say("and its population?")
    s.say("/lang FR")
    s.say("/lang français")
    s.say("/lang auto")
    assert s.end() == 0, s.screen()
    screen = s.screen()
    assert [r["model"] for r in script.requests] == ["default", "other-model"]
    assert "What is the capital of Colombia?" in script.user_turns()[:-1], "the conversation survives the switch"
    assert "model: other-model" in screen and "lang: fr" in screen and "lang: auto" in screen, screen
    assert "'français' is not a language code" in screen, screen


def test_reset_forgets_and_save_writes_a_markdown_transcript(model, index, tmp_path):
    url, script = model
    script.replies += ["Bogotá [1]", "Humber [1]", "Rousseau [1]"]
    out = tmp_path / "chat.md"
    s = Session(chat_args(url, index))
    s.say("What is the capital of Colombia?")
    s.say("/reset")
    s.say("The rivers Trent and Ouse flow into which estuary?")
    s.say("Which French painter was known as 'Le Douanier'?")
    s.say(f"/save {out}")
    s.say("/save /nonexistent/dir/chat.md")
    assert s.end() == 0, s.screen()
    assert len(script.requests[1]["messages"]) == 2, "after /reset the model sees no earlier turn"
    assert "The rivers Trent" in script.user_turns(2)[0], "the new conversation is remembered"
    text = out.read_text(encoding="utf-8")
    assert text.startswith("# Chat with default")
    assert "## The rivers Trent and Ouse flow into which estuary?\n\nHumber [1]\n\nSources:\n- [1] " in text, text
    assert "Colombia" not in text, "the conversation before /reset is not in this transcript"
    screen = s.screen()
    assert f"saved 2 turns to {out}" in screen and "cannot write /nonexistent/dir/chat.md" in screen, screen
    conversations = run_cli("history").stdout
    assert "What is the capital" in conversations and "The rivers Trent" in conversations, conversations


def test_resume_goes_on_with_a_saved_conversation(model, index):
    url, script = model
    script.replies += ["Bogotá [1]", "About 7 million [1]", "Humber [1]"]
    first = Session(chat_args(url, index))
    first.say("What is the capital of Colombia?")
    assert first.end() == 0, first.screen()
    other = Session(chat_args(url, index))
    other.say("The rivers Trent and Ouse flow into which estuary?")
    assert other.end() == 0, other.screen()
    resumed = Session([*chat_args(url, index), "--resume", "1"])
    resumed.say("and how many people live there?")
    assert resumed.end() == 0, resumed.screen()
    screen = resumed.screen()
    assert "conversation 1 resumed, 1 turns; the last: What is the capital of Colombia?" in screen, screen
    sent = script.requests[-1]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"], sent
    assert sent[1]["content"] == "What is the capital of Colombia?" and "Trent" not in json.dumps(sent)
    assert "Question: and how many people live there?" in sent[-1]["content"]
    shown = json.loads(run_cli("history", "1", "--json").stdout)
    assert [t["question"] for t in shown["turns"]] == [
        "What is the capital of Colombia?",
        "and how many people live there?",
    ], "the new turn is added to the saved conversation"
    assert [c["turns"] for c in json.loads(run_cli("history", "--json").stdout)] == [2, 1], "no new conversation"


def test_resume_with_an_unknown_id_is_one_line_that_says_where_the_ids_are(model, index):
    url, script = model
    nothing = run_cli(*chat_args(url, index)[2:], "--resume", "3")
    assert nothing.returncode == 2 and "no conversation 3: no chat is saved yet" in nothing.stderr, nothing.stderr
    script.replies += ["Bogotá [1]"]
    saved = run_cli(*chat_args(url, index)[2:], stdin="What is the capital of Colombia?\n")
    assert saved.returncode == 0, saved.stderr
    missing = run_cli(*chat_args(url, index)[2:], "--resume", "7", stdin="Who?\n")
    assert missing.returncode == 2, missing.stderr
    assert "no conversation 7 — `assistant history` lists them" in " ".join(missing.stderr.split()), missing.stderr
    assert "Traceback" not in missing.stderr and len(script.requests) == 1, "the model is never asked"


def test_retry_answers_the_last_question_again_in_place_of_its_answer(model, index):
    url, script = model
    script.replies += ["I do not know.", "Bogotá [1]", "About 7 million [1]"]
    s = Session(chat_args(url, index))
    s.say("/retry")
    s.say("/search off")
    s.say("What is the capital of Colombia?")
    s.say("/search on")
    s.say("/retry")
    s.say("and how many people live there?")
    assert s.end() == 0, s.screen()
    screen = s.screen()
    assert "no question to answer again yet" in screen and "again: What is the capital of Colombia?" in screen
    closed, retried, follow_up, second_look = script.requests  # no source says "7 million": a second look
    assert "<sources untrusted>" in second_look["messages"][-1]["content"]
    assert "<sources" not in json.dumps(closed) and "<sources untrusted>" in retried["messages"][-1]["content"]
    assert [m["role"] for m in retried["messages"]] == ["system", "user"], "the old answer is not in context"
    earlier = [m["content"] for m in follow_up["messages"][1:-1]]
    assert earlier == ["What is the capital of Colombia?", "Bogotá"], "the new answer replaced the old in context"
    shown = json.loads(run_cli("history", "1", "--json").stdout)
    assert [t["answer"] for t in shown["turns"]] == ["Bogotá [1]", "About 7 million [1]"], shown


def test_retry_after_a_stopped_answer_asks_that_question(model, index):
    url, script = model
    words = " ".join(f"w{i}" for i in range(40))
    script.replies += [f"SLOW {words}", "Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.child.sendline("What is the capital of Colombia?")
    s.child.expect_exact("w2")
    s.child.sendintr()
    s.child.expect_exact("(stopped)")
    s.prompt()
    s.say("/retry")
    assert s.end() == 0, s.screen()
    assert "Bogotá [1]" in s.screen() and "Question: What is the capital of Colombia?" in script.user_turns()[-1]
    shown = json.loads(run_cli("history", "1", "--json").stdout)
    assert [t["answer"] for t in shown["turns"]] == ["Bogotá [1]"], shown


def test_ctrl_c_stops_an_answer_and_returns_to_the_prompt(model, index):
    url, script = model
    words = " ".join(f"w{i}" for i in range(40))
    script.replies += [f"SLOW {words} LAST-WORD", "Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.child.sendline("What is the capital of Colombia?")
    s.child.expect_exact("w2")
    s.child.sendintr()
    s.child.expect_exact("(stopped)")
    s.prompt()
    s.say("What is the capital of Colombia?")
    assert s.end() == 0, s.screen()
    screen = s.screen()
    assert "LAST-WORD" not in screen and "Bogotá [1]" in screen, screen
    assert [m["role"] for m in script.requests[1]["messages"]] == ["system", "user"], "a stopped answer is no turn"
    deadline = time.monotonic() + 10
    while not script.cut and time.monotonic() < deadline:
        time.sleep(0.1)
    assert script.cut == 1, "the stopped stream's connection was closed"


def test_ctrl_c_at_the_prompt_clears_the_line_and_ctrl_d_leaves(model, index):
    url, script = model
    script.replies += ["Bogotá [1]"]
    s = Session(chat_args(url, index))
    s.child.send("half a thought")
    s.child.expect_exact("thought")
    s.child.sendintr()
    s.prompt()
    s.say("What is the capital of Colombia?")
    assert s.end() == 0, s.screen()
    assert len(script.requests) == 1 and "half a thought" not in json.dumps(script.requests)
    assert "Question: What is the capital of Colombia?" in script.user_turns()[-1]


def test_arrow_keys_edit_the_line_and_recall_earlier_questions_of_any_session(model, index, isolated):
    url, script = model
    script.replies += ["Bogotá [1]", "Bogotá [1]"]
    first = Session(chat_args(url, index))
    first.child.send("capital of Colombia?")
    first.child.send("\x1b[D" * len("capital of Colombia?"))  # left arrow to the start of the line
    first.say("What is the ")
    assert first.end() == 0, first.screen()
    assert "What is the capital of Colombia?" in (isolated / "data" / "chat_history.txt").read_text()
    second = Session(chat_args(url, index))
    second.say("\x1b[A")  # up arrow: the last line of the earlier session
    assert second.end() == 0, second.screen()
    asked = [script.user_turns(i)[-1] for i in (0, 1)]
    assert all("Question: What is the capital of Colombia?\n" in a for a in asked), asked


def test_the_oldest_turns_are_dropped_to_fit_the_window(model, index):
    url, script = model
    questions = [f"Question number {i}: {'and what is the capital of Colombia, really? ' * 4}" for i in range(1, 6)]
    script.replies += [f"Bogotá, answer {i} [1]" for i in range(1, 6)]
    s = Session(chat_args(url, index), ASSISTANT_MAX_TOKENS="2000")
    for q in questions:
        s.say(q)
    assert s.end() == 0, s.screen()
    assert "error" not in s.screen() and script.overflows == 0, s.screen()
    last = script.requests[-1]["messages"]
    earlier = [m["content"] for m in last[1:-1] if m["role"] == "user"]
    assert earlier and earlier[-1] == " ".join(questions[-2].split()), earlier
    assert " ".join(questions[0].split()) not in earlier, "the oldest turn was dropped"
    used = sum(len(m["content"]) + 8 for m in last) + 2000
    everything = sum(len(q) + len(f"Bogotá, answer {i}") + 16 for i, q in enumerate(questions[:-1], 1))
    shown = sum(len(m["content"]) + 8 for m in last[1:-1])
    assert used - shown + everything > WINDOW, "keeping every turn would have overflowed the window"


def test_no_color_on_a_terminal_prints_plain_text(model, index):
    url, script = model
    script.replies += ["Bogotá [1]"]
    s = Session(chat_args(url, index), NO_COLOR="1")
    s.say("What is the capital of Colombia?")
    assert s.end() == 0, s.screen()
    raw = "".join(s.raw)
    answer = raw.split("\x1b[?2004l", 1)[1].split("\x1b[?2004h", 1)[0]  # between prompt_toolkit's prompts
    assert "Bogotá [1]" in answer and "Sources" in answer, answer
    assert "\x1b" not in answer, f"escape codes in a NO_COLOR answer: {answer!r}"


def test_piped_chat_is_plain_text(model, index):
    url, script = model
    script.replies += ["Bogotá [1]"]
    done = run_cli(*chat_args(url, index)[2:], stdin="What is the capital of Colombia?\n/sources\n")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "\x1b" not in out, repr(out)
    assert "search What is the capital of Colombia?" in out and "Bogotá [1]" in out and "Sources" in out, out
    assert "is the capital and largest city" in out.split("Sources")[-1], "/sources printed the snippet"


@pytest.mark.slow
def test_a_session_with_the_real_bundled_model(index, tmp_path):
    s = Session(
        ["-m", "assistant", "chat", "--model", "smollm2-135m", "--search", "local", "--index", str(index)],
        ASSISTANT_THREADS="1",
    )
    s.child.timeout = 180
    s.say("What is the capital of Colombia?")
    s.say("and who founded it?")
    s.say(f"/save {tmp_path / 'chat.md'}")
    assert s.end() == 0, s.screen()
    screen = s.screen()
    assert "search What is the capital of Colombia?" in screen and "Sources" in screen, screen
    assert "smollm2-135m ·" in screen and "error:" not in screen, screen
    text = (tmp_path / "chat.md").read_text(encoding="utf-8")
    assert "## What is the capital of Colombia?" in text and "## and who founded it?" in text, text
    assert "bogot" in text.lower(), text
