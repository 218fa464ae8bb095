"""The `assistant` app's shared parts: the Typer app, the error edge, the settings flags and the output flags.

Every field of `Settings` (but `routes`, a table, and `api_key`, which a command line would show in `ps`) is a
flag of the commands that answer questions, derived here from the field's name, type and description, with its
ASSISTANT_* variable shown in `--help`: `--context-tokens` is `context_tokens` is `ASSISTANT_CONTEXT_TOKENS`.
Command modules (assistant/cli.py, cli_runs.py, cli_chat.py, cli_extract.py) import this one and register their
commands on `app`; it imports none of them. Every command logs through assistant/logs.py (set up by the app's
callback, which also answers `--version`); a command given `with_output` takes `-v/--verbose` and `-q/--quiet`.
Exit codes: assistant/errors.py.
"""

from __future__ import annotations

import functools
import inspect
import os
import typing
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar, cast

import typer
from rich.console import Console
from rich.markup import escape

from assistant import __version__
from assistant.errors import AssistantError, BadInput
from assistant.logs import logging_to
from assistant.settings import (
    ENV_PREFIX,
    RouteConfig,
    Settings,
    config_file,
    did_you_mean,
    load_settings,
    unknown_settings,
)

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="A private assistant that searches, reads and answers with citations.",
)
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"search-assistant {__version__}")
        raise typer.Exit()


@app.callback()
def _app(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    # Warnings and log records of every command, libraries' included, go to stderr one line each.
    ctx.with_resource(logging_to(err))


@dataclass(frozen=True)
class Output:
    """How much a command says beside its result: `verbose` adds steps and timings on stderr; `quiet` prints the
    result only (no steps, notes, progress or summary; errors still show)."""

    verbose: bool = False
    quiet: bool = False


_OUTPUT_FLAGS = [
    inspect.Parameter(
        "verbose",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[bool, typer.Option("--verbose", "-v", help="Show steps and timings on stderr.")],
    ),
    inspect.Parameter(
        "quiet",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool, typer.Option("--quiet", "-q", help="Print the result only: no steps, notes, progress or summary.")
        ],
    ),
]


def with_output(fn: F) -> F:
    """Give a command `-v/--verbose` and `-q/--quiet`, log at that level while it runs, and call it with
    `output=`, the Output they make."""
    signature = inspect.signature(fn, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "output"]

    @functools.wraps(fn)
    def command(*args: Any, verbose: bool = False, quiet: bool = False, **kwargs: Any) -> Any:
        if verbose and quiet:
            raise BadInput("pass -v/--verbose or -q/--quiet, not both")
        with logging_to(err, verbose=verbose, quiet=quiet):
            return fn(*args, output=Output(verbose, quiet), **kwargs)

    vars(command)["__signature__"] = signature.replace(parameters=[*own, *_OUTPUT_FLAGS])
    return cast(F, command)


def fails_cleanly(fn: F) -> F:
    """Print an AssistantError as one line on stderr and exit with its code (errors.Exit: 1, or 2 for BadInput)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AssistantError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False)  # a path may hold "[/x]"
            raise typer.Exit(e.exit_code) from None

    return cast(F, wrapper)


# How the flags are shown: short names, and the --help panel of each field (the rest go to "Search").
_SHORT = {"model": "-m", "search": "-s"}
_PANELS = {
    "Model": ("model", "backend", "base_url", "n_ctx", "threads", "temperature", "max_tokens"),
    "Answer": ("loop", "max_steps", "context_tokens", "shown_sources", "evidence_tokens"),
    "Language": ("lang", "lang_threshold", "multilingual_model", "route_memory_mb"),
}
_NOT_FLAGS = ("routes", "api_key")
MODEL_FLAGS = ("model", "backend", "base_url", "n_ctx", "threads")  # what a command that only generates needs


def settings_from(**given: Any) -> Settings:
    """Settings with the given flags (None: not given) on top of env, config file and defaults; a warning for each
    unknown key of the config file or ASSISTANT_* variable."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    try:
        settings = load_settings(**given)
    except SettingsError as e:  # a value no source could parse (ASSISTANT_ROUTES that is not JSON, say)
        raise BadInput(f"bad setting: {e} — fix the ASSISTANT_* variable or {config_file()}") from None
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(map(str, first["loc"]))
        raise BadInput(f"bad setting {key}: {first['msg']} — {_fix(key, first['type'], given)}") from None
    for warning in unknown_settings():
        err.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False, soft_wrap=True)
    return settings


def _fix(key: str, error: str, given: dict[str, Any]) -> str:
    """Where the bad setting `key` comes from, or the key it was meant to be (a misspelled field of a route)."""
    if error == "extra_forbidden" and key.startswith("routes."):  # RouteConfig forbids unknown fields
        code = key.split(".")[1]
        return did_you_mean(key, [f"routes.{code}.{field}" for field in RouteConfig.model_fields])
    name = key.split(".")[0]
    if given.get(name) is not None:
        return f"fix the --{name.replace('_', '-')} flag"
    variable = ENV_PREFIX + name.upper()
    if any(var.upper() == variable for var in os.environ):
        return f"fix or unset {variable}"
    return f"fix it in {config_file()}, or `assistant config unset {key}`"


def with_settings(only: Collection[str] | None = None) -> Callable[[F], F]:
    """Give a command the settings flags (all, or `only` these) and call it with `settings=`, the Settings they
    make; the command's own parameters stay as they are."""

    def wrap(fn: F) -> F:
        signature = inspect.signature(fn, eval_str=True)
        own = [p for p in signature.parameters.values() if p.name != "settings"]
        names = [n for n in Settings.model_fields if n not in _NOT_FLAGS and (only is None or n in only)]
        flags = [_flag(name) for name in names]

        @functools.wraps(fn)
        def command(**kwargs: Any) -> Any:
            source = kwargs.pop(_CONTEXT).get_parameter_source
            # A value Click took from ASSISTANT_* is left to Settings, which reads the variable itself: a bad one
            # is then blamed on the variable, not on a flag nobody typed.
            values = {name: kwargs.pop(name) for name in names}
            given = {name: None if _from_env(source(name)) else value for name, value in values.items()}
            return fn(settings=settings_from(**given), **kwargs)

        # Typer reads the parameters from `__signature__`: the command's own, then the flags and the context.
        context = inspect.Parameter(_CONTEXT, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)
        vars(command)["__signature__"] = signature.replace(parameters=[*own, *flags, context])
        return cast(F, command)

    return wrap


_CONTEXT = "settings_context"  # the parameter with_settings adds to receive Click's context


def _from_env(source: Any) -> bool:
    """Whether a parameter's value came from its environment variable (Click's ParameterSource, by name: Typer
    may bring its own copy of Click)."""
    return getattr(source, "name", None) == "ENVIRONMENT"


def _flag(name: str) -> inspect.Parameter:
    """The keyword parameter Typer turns into `--name`, from the Settings field of that name."""
    field = Settings.model_fields[name]
    kind = _cli_type(field.annotation)
    flag = f"--{name.replace('_', '-')}"
    if kind == bool | None:  # a switch both ways: a default of True must be able to be turned off
        flag = f"{flag}/--no-{name.replace('_', '-')}"
    names = [flag, *([_SHORT[name]] if name in _SHORT else [])]
    default = "" if field.default is None else f" [default: {field.default}]"
    option = typer.Option(
        *names,
        help=escape(f"{field.description or name.replace('_', ' ')}.{default}"),  # Rich would eat "[default: …]"
        envvar=f"ASSISTANT_{name.upper()}",
        show_envvar=True,
        show_default=False,
        rich_help_panel=next((panel for panel, fields in _PANELS.items() if name in fields), "Search"),
    )
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[kind, option])


def _cli_type(annotation: Any) -> Any:
    """The flag's type: the field's own, optional; a Literal's choices, and other types, as text that
    Settings checks."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    inner = args[0] if args and typing.get_origin(annotation) is not typing.Literal else annotation
    return inner | None if inner in (str, int, float, bool, Path) else str | None
