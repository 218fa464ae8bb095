"""Answer many questions into a JSONL file that survives interruption: `assistant batch QUESTIONS -o OUT.jsonl`.

Questions come as JSONL (`{"id"?, "question", ...}`), CSV with a `question` column (and optionally `id`), plain
text one question a line, or `-` for stdin. A question without an id is keyed `line-N` by its line number, so
re-running the same command on the same file resumes: what `OUT.jsonl` already holds is skipped (and a row whose
question differs from the one now under its id stops the run: the file changed, see `check_resume`). Each answer
is appended as one line (the `ask --json` object plus `id` and `error`) and flushed to disk at once; a line
half-written by a kill is detected on the next run, cut off, and its question asked again. A malformed input
line becomes an error row naming its line number; the rest proceeds. The output log and its lock file live in
assistant/resultlog.py; `assistant eval` uses the same runner.

    assistant batch questions.jsonl -o answers.jsonl --search local --index wiki.db
    python -c "from assistant.batch import read_questions; print(read_questions('q.csv'))"
"""

from __future__ import annotations

import csv
import io
import json
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from assistant.errors import AssistantError, BadInput
from assistant.events import Answer
from assistant.jsonl import lines
from assistant.resultlog import ResultLog
from assistant.runner import Assistant
from assistant.settings import Settings

T = TypeVar("T")
FORMATS = ("auto", "jsonl", "csv", "text")


class Progress(Protocol):
    """What a run tells its caller: repairs made to the output, how many tasks it will run, each row written."""

    def start(self, total: int) -> None: ...

    def row(self, row: dict[str, Any]) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass
class Question:
    """One input question; `error` is set when its line could not be read (it is then recorded, not asked)."""

    id: str
    question: str
    line: int
    error: str | None = None


def _detect(name: str, text: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".txt"):
        return {".csv": "csv", ".txt": "text"}[suffix]
    first = next((line for line in lines(text) if line.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    header = next(csv.reader([first]), [])
    return "csv" if "question" in (h.strip().lower() for h in header) and len(header) > 1 else "text"


def _from_jsonl(text: str) -> list[Question]:
    out = []
    for n, line in enumerate(lines(text), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            out.append(Question(f"line-{n}", "", n, f"line {n}: not valid JSON ({e.msg}) — fix or remove the line"))
            continue
        question = record.get("question") if isinstance(record, dict) else None
        if not isinstance(question, str) or not question.strip():
            out.append(Question(f"line-{n}", "", n, f'line {n}: no "question" text — each line needs one'))
            continue
        out.append(Question(str(record.get("id") or f"line-{n}"), question, n))
    return out


def _from_csv(text: str) -> list[Question]:
    reader = csv.DictReader(io.StringIO(text))
    columns = {(c or "").strip().lower(): c for c in reader.fieldnames or []}
    if "question" not in columns:
        raise BadInput(
            f"the CSV has no 'question' column (columns: {', '.join(reader.fieldnames or []) or 'none'}) — "
            "name the column of questions 'question'"
        )
    out = []
    try:
        for row in reader:
            n = reader.line_num
            question, qid = row.get(columns["question"]) or "", row.get(columns.get("id", ""), "") or ""
            if None in row:
                out.append(Question(f"line-{n}", question, n, f"line {n}: more fields than the header has"))
            elif not question.strip():
                out.append(Question(f"line-{n}", "", n, f"line {n}: the question is empty"))
            else:
                out.append(Question(qid.strip() or f"line-{n}", question, n))
    except csv.Error as e:
        n = reader.line_num
        out.append(Question(f"line-{n}", "", n, f"line {n}: {e} — the lines after it were not read"))
    return out


def _from_text(text: str) -> list[Question]:
    return [Question(f"line-{n}", line.strip(), n) for n, line in enumerate(lines(text), 1) if line.strip()]


def read_questions(source: str | Path, fmt: str = "auto") -> list[Question]:
    """Questions from a file or `-` (stdin); bad lines come back as Questions with `error` set."""
    if fmt not in FORMATS:
        raise BadInput(f"unknown input format {fmt!r} — one of: {', '.join(FORMATS)}")
    if str(source) == "-":
        try:
            name, text = "stdin", sys.stdin.read()
        except UnicodeDecodeError as e:
            raise BadInput(f"stdin is not UTF-8 text (byte {e.start + 1}) — pass the questions as UTF-8") from None
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise BadInput(f"questions file not found: {path} — pass a .jsonl, .csv or .txt file, or - for stdin")
        try:
            name, text = str(path), path.read_text(encoding="utf-8-sig", errors="replace")
        except OSError as e:
            raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    fmt = _detect(name, text) if fmt == "auto" else fmt
    questions = {"jsonl": _from_jsonl, "csv": _from_csv, "text": _from_text}[fmt](text)
    first: dict[str, int] = {}
    for q in questions:  # a repeated id would make resuming skip a question: record it as an error instead
        if q.error is None and q.id in first:
            q.id, q.error = f"line-{q.line}", f"line {q.line}: duplicate id {q.id!r} (first on line {first[q.id]})"
        first.setdefault(q.id, q.line)
    return questions


def workers_for(settings: Settings, requested: int) -> tuple[int, str | None]:
    """How many questions may run at once with this backend, and why fewer than asked, if so."""
    if requested <= 1:
        return 1, None
    from assistant.models import resolve_model

    backend = resolve_model(settings).backend
    if backend == "openai":
        return requested, None
    return 1, (
        f"--concurrency {requested} ignored: the {backend} backend answers one question at a time (its model "
        "is not thread-safe); serve the model with parallel slots (vLLM, llama-server -np N) and use --backend openai"
    )


@dataclass
class PerThread(Generic[T]):
    """One object per worker thread, made by `factory`; `spare` ones (made up front) are handed out first."""

    factory: Callable[[], T]
    spare: list[T] = field(default_factory=list)
    local: threading.local = field(default_factory=threading.local)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> T:
        """This thread's object."""
        value = getattr(self.local, "value", None)
        if value is None:
            with self.lock:
                value = self.spare.pop() if self.spare else None
            self.local.value = value = value if value is not None else self.factory()
        return value


def run_tasks(
    tasks: Sequence[T],
    work: Callable[[T], dict[str, Any]],
    fail: Callable[[T, str], dict[str, Any]],
    log: ResultLog,
    *,
    concurrency: int = 1,
    progress: Progress | None = None,
    stop_after_errors: int = 10,
) -> None:
    """Run `work` on each task (N at once in threads), appending each row to `log` as soon as it is done.

    `progress` hears of each row; its `start` is the caller's to call (the total may include rows it writes).

    A task that raises is recorded as `fail(task, message)`. After `stop_after_errors` failures in a row (a
    server down, a model gone) the run stops with an AssistantError rather than fill the log with errors.
    """
    streak: list[str] = []

    def call(task: T) -> dict[str, Any]:
        try:
            return work(task)
        except Exception as e:  # one failing question must not end a run of thousands
            return fail(task, f"{type(e).__name__}: {e}" if not isinstance(e, AssistantError) else str(e))

    def record(row: dict[str, Any]) -> None:
        log.append(row)
        if progress:
            progress.row(row)
        streak[:] = [*streak, row["error"]] if row.get("error") else []
        if len(streak) >= stop_after_errors:
            raise AssistantError(
                f"stopped: the last {len(streak)} questions failed (last: {streak[-1]}) — fix the cause and "
                "re-run the same command with --retry-errors"
            )

    if concurrency <= 1:
        for task in tasks:  # in this thread, so that Ctrl-C stops a generation at once
            record(call(task))
        return
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="batch")
    try:
        pending: set[Future[dict[str, Any]]] = set()
        queue = iter(tasks)
        while True:
            for task in queue:  # keep every worker busy without queueing the whole input
                pending.add(pool.submit(call, task))
                if len(pending) >= concurrency:
                    break
            if not pending:
                return
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                record(future.result())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def answer_row(assistant: Assistant, q: Question) -> dict[str, Any]:
    """The `ask --json` object of one question, with its id and `error: null`."""
    final = None
    for event in assistant.ask(q.question):
        if isinstance(event, Answer):
            final = event
    if final is None:
        raise RuntimeError("the loop ended without an answer")
    return {"id": q.id, **final.to_dict(), "error": None}


def error_row(q: Question, message: str) -> dict[str, Any]:
    """The row recorded for a question that could not be read or answered."""
    return {"id": q.id, "question": q.question, "line": q.line, "error": message}


def check_resume(questions: Sequence[Question], log: ResultLog) -> None:
    """Refuse to resume when a row of `log` answers another question than the one now under its id.

    Ids default to line numbers, so a line inserted or edited since the last run would otherwise leave old answers
    paired with new questions. A row of an unreadable line carries no question and is not compared."""
    rows = {row["id"]: row for row in log.rows}
    for q in questions:
        row = rows.get(q.id)
        old = row.get("question") if row else None
        if not isinstance(old, str) or (not old and row and row.get("error")):
            continue
        if old.strip() != q.question.strip():
            raise BadInput(
                f"line {q.line} (id {q.id!r}) asks {q.question!r}, but {log.path} holds the answer to {old!r} under "
                "that id — the questions changed since that run: write to another -o/--out, or give each question "
                "an id (a JSONL or CSV 'id') so that lines can move"
            )


def run_batch(
    questions: Sequence[Question],
    log: ResultLog,
    assistants: PerThread[Assistant],
    *,
    concurrency: int = 1,
    progress: Progress | None = None,
) -> list[Question]:
    """Record unreadable questions, then answer the rest not yet in `log`; returns the questions it asked.

    AssistantError (before anything is asked) if a row of `log` answers another question than its id's now."""
    check_resume(questions, log)
    todo = [q for q in questions if q.id not in log.done]
    if progress:
        progress.start(len(todo))
    for q in todo:
        if q.error:
            log.append(row := error_row(q, q.error))
            if progress:
                progress.row(row)
    todo = [q for q in todo if not q.error]

    def work(q: Question) -> dict[str, Any]:
        return answer_row(assistants.get(), q)

    run_tasks(todo, work, error_row, log, concurrency=concurrency, progress=progress)
    return todo
