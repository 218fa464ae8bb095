"""The `config` command: the settings in force, and config.toml written and edited (assistant/settings_file.py).

    assistant config                  # the file's path, then `key = value` for every setting in force
    assistant config --json           # {"config_file", "present", "settings": {...}}
    assistant config init [--force]   # a commented config.toml with every key and its default
    assistant config set KEY VALUE    # validated; the nearest valid key on a typo
    assistant config get KEY          # the value in force: text as is, nothing when unset, else JSON
    assistant config unset KEY        # back to the default

`api_key` is masked wherever it is shown.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.markup import escape

from assistant.cli_app import app, err, fails_cleanly, settings_from
from assistant.listing import print_json
from assistant.settings import Settings, config_file

config_app = typer.Typer(
    help="Show the settings in force; write, set, read or unset the keys of config.toml.", invoke_without_command=True
)
app.add_typer(config_app, name="config")

KEY = Annotated[str, typer.Argument(help="A setting (`assistant config` lists them), or routes.CODE.FIELD.")]


def masked(secret: str) -> str:
    """A secret as `sk-…abcd`: enough to tell keys apart, too little to use one."""
    return f"{secret[:3]}…{secret[-4:]}" if len(secret) >= 16 else "***"


def shown(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-able values, `api_key` masked: what every form of `assistant config` prints."""
    values = settings.model_dump(mode="json")
    if values.get("api_key"):
        values["api_key"] = masked(values["api_key"])
    return values


@config_app.callback()
@fails_cleanly
def config(
    ctx: typer.Context,
    as_json: Annotated[
        bool, typer.Option("--json", help='Print {"config_file", "present", "settings": {...}} as JSON.')
    ] = False,
) -> None:
    """Show the config file's path and the settings in force (the API key masked)."""
    if ctx.invoked_subcommand:
        return
    path = config_file()
    values = shown(settings_from())
    if as_json:
        print_json({"config_file": str(path), "present": path.exists(), "settings": values})
        return
    typer.echo(f"# config file: {path} ({'present' if path.exists() else 'absent'})")
    for key, value in values.items():
        typer.echo(f"{key} = {json.dumps(value, ensure_ascii=False)}")


@config_app.command("init")
@fails_cleanly
def config_init(
    force: Annotated[bool, typer.Option("--force", help="Replace an existing config.toml.")] = False,
) -> None:
    """Write a config.toml with every key, what it does and its default, all commented out."""
    from assistant import settings_file

    path = config_file()
    settings_file.write_template(path, force)
    typer.echo(f"wrote {path}")


@config_app.command("set")
@fails_cleanly
def config_set(key: KEY, value: Annotated[str, typer.Argument(help="The value, as on the command line.")]) -> None:
    """Set a key in config.toml, validated as the settings are (a bad value leaves the file as it was)."""
    from assistant import settings_file

    path = config_file()
    written = settings_file.set_value(path, key, value)
    if key == "api_key":
        written = masked(written)
    typer.echo(f"{key} = {json.dumps(written, ensure_ascii=False)} in {path}")
    _note_override(key)


@config_app.command("get")
@fails_cleanly
def config_get(key: KEY) -> None:
    """Print the value in force of a key (ASSISTANT_* variable > config.toml > default): text as is, nothing when
    unset, anything else as JSON."""
    from assistant import settings_file

    settings_file.key_field(key)  # a typo is an error before the settings are read
    value = settings_file.value_in_force(shown(settings_from()), key)
    typer.echo("" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))


@config_app.command("unset")
@fails_cleanly
def config_unset(key: KEY) -> None:
    """Remove a key from config.toml, so that its default applies."""
    from assistant import settings_file

    path = config_file()
    removed = settings_file.unset_value(path, key)
    typer.echo(f"{key} removed from {path}" if removed else f"{key} was not set in {path}")
    _note_override(key)


def _note_override(key: str) -> None:
    from assistant import settings_file

    variable = settings_file.overriding_variable(key)
    if variable:
        err.print(
            f"[yellow]note:[/yellow] {escape(variable)} is set: it takes precedence over the file", highlight=False
        )
