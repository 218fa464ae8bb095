"""The `batch` and `eval` commands: many questions, written as they are answered, resumable after any stop.

Both share `ask`'s options (model, backend, search, index, …) and add `--concurrency N` (N questions at once
where the backend can serve them: `--backend openai` against a server with parallel slots) and
`--retry-errors`. A progress bar with rate and ETA shows on a terminal; piped, only warnings and a summary line
go to stderr (`-q`: neither). Both finish every row they can, then exit 1 when any row of the output is an error,
saying how many (assistant/errors.py has the table of exit codes).

    assistant batch questions.csv -o answers.jsonl --search local --index wiki.db
    assistant eval /work/shared/data/triviaqa/wiki-dev300.jsonl --mode all --limit 50 --out runs/dev300
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, ProgressColumn, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.text import Text

from assistant.cli_app import Output, app, err, fails_cleanly, with_output, with_settings
from assistant.errors import AssistantError, BadInput, Exit
from assistant.settings import Settings

ConcurrencyOpt = Annotated[
    int, typer.Option("--concurrency", "-j", min=1, help="Questions at once (parallel only with --backend openai).")
]
RetryOpt = Annotated[bool, typer.Option("--retry-errors", help="Ask again the questions whose row is an error.")]


def _warn(label: str, text: str, console: Console | None = None) -> None:
    (console or err).print(f"[yellow]{label}:[/yellow] {escape(text)}", highlight=False, soft_wrap=True)


class Rate(ProgressColumn):
    """Questions per minute."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed * 60:.1f}/min" if speed else "–/min", style="progress.data.speed")


class Reporter:
    """A rich progress bar on a terminal (nothing when piped); each failed row as one warning line; with `quiet`,
    nothing at all (it still counts)."""

    def __init__(self, console: Console, label: str, quiet: bool = False):
        self.console, self.label, self.quiet = console, label, quiet
        self.written = self.errors = 0
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            Rate(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        )

    def start(self, total: int) -> None:
        """Show the bar for `total` questions."""
        self.task = self.bar.add_task(self.label, total=total)
        self.bar.start()

    def row(self, row: dict[str, Any]) -> None:
        """Count a written row."""
        self.written += 1
        if row.get("error"):
            self.errors += 1
            where = row["id"] + (f" ({row['mode']})" if "mode" in row else "")
            error = row["error"]  # an input line's error names its line already
            if not self.quiet:
                _warn("warning", error if error.startswith("line ") else f"{where}: {error}", self.bar.console)
        self.bar.advance(self.task)

    def note(self, message: str) -> None:
        """A repair of the output file, said once before the run."""
        if not self.quiet:
            _warn("repaired", message, self.bar.console)

    def summary(self, text: str) -> None:
        """The closing line: rows written and errors."""
        if not self.quiet:
            err.print(text, soft_wrap=True, highlight=False, markup=False)

    def stop(self) -> None:
        """Remove the bar."""
        self.bar.stop()


def _interrupted(out: Path) -> typer.Exit:
    message = f"interrupted: what was answered is in {out}; run the same command again to resume"
    err.print(message, soft_wrap=True, markup=False)
    return typer.Exit(Exit.INTERRUPTED)


def _failed_rows(rows: list[dict[str, Any]], out: Path) -> AssistantError | None:
    """The error a run ends with when any of its rows is an error (the other rows were all answered)."""
    failed = sum(bool(row.get("error")) for row in rows)
    if not failed:
        return None
    return AssistantError(
        f"{failed} of {len(rows)} rows in {out} ended in an error (their 'error' says why) — run the same command "
        "with --retry-errors to ask them again"
    )


@app.command("batch")
@fails_cleanly
@with_settings()
@with_output
def batch(
    questions: Annotated[str, typer.Argument(help="JSONL, CSV (a 'question' column) or text file; - for stdin.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL file to append answers to; resumes if present.")],
    settings: Settings,
    output: Output,
    fmt: Annotated[str, typer.Option("--format", help="auto | jsonl | csv | text (auto: by name/content).")] = "auto",
    concurrency: ConcurrencyOpt = 1,
    retry_errors: RetryOpt = False,
) -> None:
    """Answer every question of a file, one JSON line per answer in OUT; run it again to resume. Exit 1 when any
    row is an error."""
    from assistant.batch import PerThread, check_resume, read_questions, run_batch, workers_for
    from assistant.resultlog import ResultLog
    from assistant.runner import Assistant

    s = settings
    if questions != "-" and out.resolve() == Path(questions).resolve():
        raise BadInput(f"the answers would be written into the questions file {out} — pass another -o/--out")
    items = read_questions(questions, fmt)
    workers, note = workers_for(s, concurrency)
    if note and not output.quiet:
        _warn("note", note)
    reporter = Reporter(err, "answering", output.quiet)
    with ResultLog(out, key=lambda row: row["id"]) as log:
        for warning in log.warnings:
            reporter.note(warning)
        if retry_errors:
            log.drop(lambda row: bool(row.get("error")))
        check_resume(items, log)  # also when every id is done: an edited line must not pass as answered
        skipped = sum(q.id in log.done for q in items)
        if skipped < len(items):
            assistants: PerThread[Assistant] = PerThread(lambda: Assistant.from_settings(s))
            assistants.spare.append(assistants.factory())  # load once up front: a bad model fails before any row
            try:
                run_batch(items, log, assistants, concurrency=workers, progress=reporter)
            except KeyboardInterrupt:
                raise _interrupted(out) from None
            finally:
                reporter.stop()
        failed = _failed_rows(log.rows, out)
    reporter.summary(f"{reporter.written} rows written, {reporter.errors} of them errors, {skipped} already in {out}")
    if failed:
        raise failed


@app.command("eval")
@fails_cleanly
@with_settings()
@with_output
def eval_(
    dataset: Annotated[Path, typer.Argument(help="TriviaQA .json, or .jsonl of {question, answers|golden_answers}.")],
    settings: Settings,
    output: Output,
    mode: Annotated[
        str,
        typer.Option("--mode", help="closed | plain | rag | search | both (closed+search) | all, or plain,rag,search."),
    ] = "both",
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Only this many questions.")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Pick --limit questions at random with this seed.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder for results and report.")] = None,
    concurrency: ConcurrencyOpt = 1,
    retry_errors: RetryOpt = False,
) -> None:
    """Score the assistant on a QA dataset (EM, F1, match) closed-book, as naive RAG and/or with its search loop.
    Exit 1 when any row is an error (the report is written first)."""
    from assistant.batch import PerThread, workers_for
    from assistant.evals.datasets import load_dataset
    from assistant.evals.report import markdown, write_report
    from assistant.evaluate import EvalRun, modes_for, run_config
    from assistant.runner import Assistant

    modes = modes_for(mode)
    task = load_dataset(dataset).select(limit, seed)
    for problem in [] if output.quiet else task.problems[:5]:
        _warn("warning", f"{dataset}: {problem}; skipped")
    if len(task.problems) > 5 and not output.quiet:
        _warn("warning", f"{dataset}: {len(task.problems) - 5} more lines skipped")
    s = settings
    if modes != ["closed"] and s.search_chain() in ([], ["none"]):
        raise BadInput(f"--mode {mode} needs search — pass e.g. --search local --index DB.db, or --mode closed")
    out = out or Path("runs") / f"eval-{dataset.stem}"
    workers, note = workers_for(s, concurrency)
    if note and not output.quiet:
        _warn("note", note)
    assistant = Assistant.from_settings(s)
    config = run_config(assistant, dataset)
    assistants = PerThread(lambda: Assistant.from_settings(s), [assistant])
    run = EvalRun(task, modes, out, assistants, workers, retry_errors, config)
    reporter = Reporter(err, "/".join(modes), output.quiet)
    try:
        rows = run.run(reporter)
    except KeyboardInterrupt:
        raise _interrupted(out / "results.jsonl") from None
    finally:
        reporter.stop()
    summary = write_report(out, rows, modes, {**config, "limit": limit, "seed": seed})
    typer.echo(markdown(summary), nl=False)
    sys.stdout.flush()  # the report before the summary line on stderr, also when both go to one pipe
    files = f"{out}/results.jsonl, report.md, report.json, report.png"
    reporter.summary(f"{reporter.written} rows written, {reporter.errors} of them errors → {files}")
    failed = _failed_rows(rows, out / "results.jsonl")
    if failed:
        raise failed
