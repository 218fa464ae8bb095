"""`assistant batch`: inputs (JSONL, CSV, text, stdin), malformed lines, the kill-safe log, resume, concurrency.

Answers come from a scripted OpenAI-compatible server on 127.0.0.1 (`--backend openai`), so the CLI runs its
real path, in this process or in a subprocess that the tests kill.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.batch import read_questions, workers_for
from assistant.cli import app
from assistant.errors import AssistantError
from assistant.resultlog import ResultLog
from assistant.settings import load_settings
from tests.conftest import restore_sigint

runner = CliRunner()


@dataclass
class Server:
    """A scripted chat-completions server: answers by question, with a delay, failing on demand."""

    url: str = ""
    answers: dict[str, str] = field(default_factory=dict)  # a substring of the prompt -> the reply
    delay: float = 0.0
    fail: bool = False
    questions: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply(self, prompt: str) -> str:
        question = prompt.rsplit("Question:", 1)[-1].strip().splitlines()[0]
        return next((a for k, a in self.answers.items() if k in prompt), f"Answer: echo {question}")


def _chunk(**fields: Any) -> bytes:
    return f"data: {json.dumps(fields)}\n\n".encode()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        server: Server = self.server.script  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.endswith("/chat/completions"):
            self.send_error(404)
            return
        prompt = "\n".join(m["content"] for m in body["messages"])
        with server.lock:
            server.questions.append(prompt.rsplit("Question:", 1)[-1].strip().splitlines()[0])
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            time.sleep(server.delay)
            if server.fail:
                self.send_response(500)
                self.end_headers()
                self.wfile.write(b'{"error": {"message": "out of memory"}}')
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            text = server.reply(prompt)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client the test killed
                self.wfile.write(_chunk(choices=[{"index": 0, "delta": {"content": text}, "finish_reason": None}]))
                self.wfile.write(_chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "stop"}]))
                self.wfile.write(_chunk(choices=[], usage={"prompt_tokens": 50, "completion_tokens": 5}))
                self.wfile.write(b"data: [DONE]\n\n")
        finally:
            with server.lock:
                server.in_flight -= 1

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """The scripted server on a free port of 127.0.0.1."""
    script = Server()
    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    http.script = script  # type: ignore[attr-defined]
    http.daemon_threads = True
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    try:
        yield script
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    """A fresh scripted server for each test."""
    with running_server() as script:
        yield script


def batch_args(server: Server, questions: Path | str, out: Path) -> list[str]:
    return ["batch", str(questions), "-o", str(out), "--backend", "openai", "--base-url", server.url, "-s", "none"]


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- reading questions ---------------------------------------------------------------------------------------


def test_jsonl_questions_keep_ids_and_bad_lines_become_errors_with_line_numbers(tmp_path: Path):
    src = write_lines(
        tmp_path / "q.jsonl",
        ['{"id": "a", "question": "Who?", "answers": ["x"]}', "", "not json", '{"question": "What?"}', "[1, 2]"],
    )
    qs = read_questions(src)
    assert [(q.id, q.line) for q in qs] == [("a", 1), ("line-3", 3), ("line-4", 4), ("line-5", 5)]
    assert qs[0].question == "Who?" and qs[0].error is None and qs[2].error is None
    assert "line 3: not valid JSON" in (qs[1].error or "")
    assert 'line 5: no "question"' in (qs[3].error or "")


def test_csv_questions_with_quotes_commas_newlines_and_a_bom(tmp_path: Path):
    src = tmp_path / "q.csv"
    src.write_text(
        '\ufeffID,Question,notes\nq1,"Who painted ""The Night Watch""?",x\nq2,"Where is it,\nexactly?",y\n,,z\n',
        encoding="utf-8",
    )
    qs = read_questions(src)
    assert [q.id for q in qs] == ["q1", "q2", "line-5"]
    assert qs[0].question == 'Who painted "The Night Watch"?' and qs[1].question == "Where is it,\nexactly?"
    assert qs[2].error == "line 5: the question is empty"


def test_csv_without_a_question_column_is_one_clear_error(tmp_path: Path):
    src = write_lines(tmp_path / "q.csv", ["id,text", "1,Who?"])
    with pytest.raises(AssistantError, match="no 'question' column \\(columns: id, text\\)"):
        read_questions(src)


def test_text_and_stdin_questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    src = write_lines(tmp_path / "q.txt", ["What is the capital of Colombia?", "", "  Who wrote Emma?  "])
    assert [(q.id, q.question) for q in read_questions(src)] == [
        ("line-1", "What is the capital of Colombia?"),
        ("line-3", "Who wrote Emma?"),
    ]
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"id": "s1", "question": "Who?"}\n'))
    assert [(q.id, q.question) for q in read_questions("-")] == [("s1", "Who?")]
    monkeypatch.setattr(sys, "stdin", io.StringIO("id,question\nc1,Why?\n"))
    assert [(q.id, q.question) for q in read_questions("-")] == [("c1", "Why?")]
    monkeypatch.setattr(sys, "stdin", io.StringIO("Why, though?\n"))
    assert [(q.id, q.question) for q in read_questions("-", fmt="auto")] == [("line-1", "Why, though?")]


def test_a_repeated_id_is_an_error_row_not_a_silently_skipped_question(tmp_path: Path):
    src = write_lines(tmp_path / "q.jsonl", ['{"id": "a", "question": "One?"}', '{"id": "a", "question": "Two?"}'])
    second = read_questions(src)[1]
    assert second.id == "line-2" and second.error == "line 2: duplicate id 'a' (first on line 1)"


# --- the log ---------------------------------------------------------------------------------------------------


def test_a_half_written_last_line_is_cut_off_and_reported(tmp_path: Path):
    out = tmp_path / "a.jsonl"
    out.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "answer": "Bog\xc3')  # cut inside a UTF-8 character
    with ResultLog(out, key=lambda r: r["id"]) as log:
        assert log.done == {"a", "b"}
        assert len(log.warnings) == 1 and "line 3 was cut off mid-write" in log.warnings[0]
        log.append({"id": "c", "answer": "Bogotá"})
    assert [r["id"] for r in rows(out)] == ["a", "b", "c"]


def test_a_row_holding_a_unicode_line_separator_is_one_row_when_resumed(tmp_path: Path):
    # page text holds U+2028, U+2029 and U+0085 ("…" read as Latin-1), written as they are; str.splitlines() broke
    # such a row in two, and every resume asked its question again and kept both rows
    out = tmp_path / "a.jsonl"
    with ResultLog(out, key=lambda r: r["id"]) as log:
        log.append({"id": "a", "answer": "Bogot\u2028á\u2029 \x85 [1]"})
    with ResultLog(out, key=lambda r: r["id"]) as log:
        assert log.done == {"a"} and not log.warnings, log.warnings
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"id": "q1", "question": "Capital of\u2028Colombia?"}, ensure_ascii=False) + "\n")
    assert [q.id for q in read_questions(questions)] == ["q1"]


def test_a_complete_last_line_without_newline_is_kept_and_a_corrupt_one_reported(tmp_path: Path):
    out = tmp_path / "a.jsonl"
    out.write_text('{"id": "a"}\ngarbage\n{"id": "b"}', encoding="utf-8")
    with ResultLog(out, key=lambda r: r["id"]) as log:
        assert log.done == {"a", "b"}
        assert log.warnings == [f"{out}: line 2 is not a result row: ignored; its question runs again"]
        log.append({"id": "c"})
    assert out.read_text(encoding="utf-8").splitlines()[-2:] == ['{"id": "b"}', '{"id": "c"}']


def test_two_writers_on_one_output_fail_clearly_and_the_lock_goes_with_the_first(tmp_path: Path):
    out = tmp_path / "a.jsonl"
    busy = pytest.raises(AssistantError, match=r"another run \(pid \d+\) is writing a.jsonl")
    with ResultLog(out, key=lambda r: r["id"]), busy:
        ResultLog(out, key=lambda r: r["id"]).open()
    assert not (tmp_path / "a.jsonl.lock").exists()
    with ResultLog(out, key=lambda r: r["id"]) as log:  # free again
        log.append({"id": "x"})
    (tmp_path / "a.jsonl.lock").write_text("99999\n")  # left by a killed run: nobody holds it
    with ResultLog(out, key=lambda r: r["id"]) as log:
        assert log.done == {"x"}


# --- the command -----------------------------------------------------------------------------------------------


def test_batch_answers_each_question_once_and_records_malformed_lines(server: Server, tmp_path: Path):
    """A malformed line is an error row; the others are answered, then the batch exits 1 saying how many failed."""
    src = write_lines(tmp_path / "q.jsonl", ['{"id": "a", "question": "Who?"}', "{oops", '{"question": "What?"}'])
    out = tmp_path / "a.jsonl"
    result = runner.invoke(app, batch_args(server, src, out))
    assert result.exit_code == 1, result.output
    assert "line 2: not valid JSON" in result.output and "3 rows written, 1 of them errors" in result.output
    assert f"error: 1 of 3 rows in {out} ended in an error" in " ".join(result.stderr.split()), result.stderr
    got = {r["id"]: r for r in rows(out)}
    assert got["a"]["short_answer"] == "echo Who?" and got["a"]["error"] is None
    assert {"question", "answer", "short_answer", "sources", "model", "steps", "usage", "timings"} <= got["a"].keys()
    assert got["line-2"]["error"].startswith("line 2: not valid JSON") and got["line-2"]["line"] == 2
    assert got["line-3"]["short_answer"] == "echo What?"
    again = runner.invoke(app, batch_args(server, src, out))  # the error row is still there: still exit 1
    assert again.exit_code == 1 and "0 rows written, 0 of them errors, 3 already in" in again.output, again.output
    assert len(rows(out)) == 3 and server.questions == ["Who?", "What?"]


def test_batch_reads_stdin_and_csv(server: Server, tmp_path: Path):
    result = runner.invoke(app, batch_args(server, "-", tmp_path / "s.jsonl"), input="Who?\nWhy?\n")
    assert result.exit_code == 0, result.output
    assert [r["short_answer"] for r in rows(tmp_path / "s.jsonl")] == ["echo Who?", "echo Why?"]
    src = write_lines(tmp_path / "q.csv", ["question,id", "Where?,w1"])
    result = runner.invoke(app, batch_args(server, src, tmp_path / "c.jsonl"))
    assert result.exit_code == 0, result.output
    assert [(r["id"], r["short_answer"]) for r in rows(tmp_path / "c.jsonl")] == [("w1", "echo Where?")]


def test_resume_after_a_cut_off_write_asks_only_what_is_missing(server: Server, tmp_path: Path):
    src = write_lines(tmp_path / "q.txt", [f"Question number {i}?" for i in range(6)])
    out = tmp_path / "a.jsonl"
    assert runner.invoke(app, batch_args(server, src, out)).exit_code == 0
    lines = out.read_text(encoding="utf-8").splitlines(keepends=True)
    out.write_text("".join(lines[:3]) + lines[3][: len(lines[3]) // 2], encoding="utf-8")  # killed mid-line 4
    server.questions.clear()
    result = runner.invoke(app, batch_args(server, src, out))
    assert result.exit_code == 0, result.output
    assert "line 4 was cut off mid-write" in result.output and "3 rows written" in result.output
    assert server.questions == [f"Question number {i}?" for i in (3, 4, 5)]
    assert [r["id"] for r in rows(out)] == [f"line-{i}" for i in range(1, 7)]


def test_concurrency_runs_questions_in_parallel_on_an_openai_server(server: Server, tmp_path: Path):
    server.delay = 0.3
    src = write_lines(tmp_path / "q.txt", [f"Q{i}?" for i in range(8)])
    result = runner.invoke(app, [*batch_args(server, src, tmp_path / "a.jsonl"), "--concurrency", "4"])
    assert result.exit_code == 0, result.output
    assert server.max_in_flight > 1
    assert sorted(r["short_answer"] for r in rows(tmp_path / "a.jsonl")) == sorted(f"echo Q{i}?" for i in range(8))


def test_local_backends_answer_one_question_at_a_time_and_say_so():
    workers, note = workers_for(load_settings(model="smollm2-135m"), 4)
    assert workers == 1 and note and "--concurrency 4 ignored" in note and "llama-cpp" in note
    assert workers_for(load_settings(backend="openai", base_url="http://127.0.0.1:1/v1"), 4) == (4, None)


def test_a_failing_server_stops_the_run_and_retry_errors_asks_again(server: Server, tmp_path: Path):
    server.fail = True
    src = write_lines(tmp_path / "q.txt", [f"Q{i}?" for i in range(12)])
    out = tmp_path / "a.jsonl"
    result = runner.invoke(app, batch_args(server, src, out))
    assert result.exit_code == 1, result.output
    assert "stopped: the last 10 questions failed" in result.output and "out of memory" in result.output
    assert len(rows(out)) == 10 and all("HTTP 500" in r["error"] for r in rows(out))
    server.fail = False
    result = runner.invoke(app, [*batch_args(server, src, out), "--retry-errors"])
    assert result.exit_code == 0, result.output
    assert [r["error"] for r in rows(out)] == [None] * 12 and len({r["id"] for r in rows(out)}) == 12


def _start(server: Server, src: Path, out: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "assistant", *batch_args(server, src, out)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=restore_sigint)


def _wait_for_lines(out: Path, n: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not (out.exists() and out.read_text(encoding="utf-8").count("\n") >= n):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the batch wrote nothing in 30 s"
        time.sleep(0.05)


def test_a_killed_batch_resumes_without_losing_or_repeating_answers(server: Server, tmp_path: Path):
    server.delay = 0.1
    src = write_lines(tmp_path / "q.txt", [f"Question {i}?" for i in range(20)])
    out = tmp_path / "a.jsonl"
    proc = _start(server, src, out)
    try:
        _wait_for_lines(out, 3, proc)
        busy = runner.invoke(app, batch_args(server, src, out))
        assert busy.exit_code == 1 and f"another run (pid {proc.pid}) is writing a.jsonl" in busy.output, busy.output
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = len(rows(out))
    assert 3 <= done < 20
    with open(out, "a", encoding="utf-8") as f:
        f.write('{"id": "line-19", "question": "Quest')  # as if killed in the middle of a write
    result = runner.invoke(app, batch_args(server, src, out))
    assert result.exit_code == 0, result.output
    assert f"line {done + 1} was cut off" in result.output
    assert sorted(r["id"] for r in rows(out)) == sorted(f"line-{i}" for i in range(1, 21))


def test_ctrl_c_stops_with_a_resume_hint(server: Server, tmp_path: Path):
    server.delay = 0.2
    src = write_lines(tmp_path / "q.txt", [f"Question {i}?" for i in range(30)])
    out = tmp_path / "a.jsonl"
    proc = _start(server, src, out)
    _wait_for_lines(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "run the same command again to resume" in stderr
    assert "Traceback" not in stderr
    assert all(r["error"] is None for r in rows(out)) and 1 <= len(rows(out)) < 30


def test_a_resumed_batch_refuses_rows_whose_question_changed(server: Server, tmp_path: Path):
    """Default ids are line numbers: a line inserted or edited would pair old answers with new questions."""
    src = write_lines(tmp_path / "q.txt", ["Who painted The Night Watch?", "Where is the Humber?"])
    out = tmp_path / "a.jsonl"
    assert runner.invoke(app, batch_args(server, src, out)).exit_code == 0
    before = out.read_text(encoding="utf-8")
    write_lines(src, ["What is the capital of Colombia?", "Who painted The Night Watch?", "Where is the Humber?"])
    result = runner.invoke(app, batch_args(server, src, out))
    message = " ".join(result.output.split())
    assert result.exit_code == 2, message
    assert "line 1 (id 'line-1')" in message and "'Who painted The Night Watch?'" in message, message
    assert "'What is the capital of Colombia?'" in message, message
    write_lines(src, ["Who painted The Night Watch?", "Where is the Thames?"])  # edited: every id is done
    result = runner.invoke(app, batch_args(server, src, out))
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "line 2 (id 'line-2')" in message and "Thames" in message, message
    assert out.read_text(encoding="utf-8") == before and len(server.questions) == 2
    write_lines(src, ["Who painted The Night Watch?", "Where is the Humber?", "Where is the Thames?"])  # appended
    result = runner.invoke(app, batch_args(server, src, out))
    assert result.exit_code == 0 and "1 rows written" in result.output, result.output


def test_answers_are_never_written_into_the_questions_file(server: Server, tmp_path: Path):
    """The log would cut the questions file's unterminated last line as a half-written row, then append answers."""
    src = tmp_path / "q.txt"
    src.write_text("Who painted The Night Watch?\nWhere is the Humber?", encoding="utf-8")
    result = runner.invoke(app, batch_args(server, src, tmp_path / "." / "q.txt"))
    message = " ".join(result.output.split())
    assert result.exit_code == 2 and "into the questions file" in message, message
    assert src.read_text(encoding="utf-8") == "Who painted The Night Watch?\nWhere is the Humber?"
    assert not server.questions
