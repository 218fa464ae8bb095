"""config.toml written and edited for the user: the commented template, and one key set, unset or read.

    assistant config init                     # every key with its default, commented out
    assistant config set max_steps 5          # validated as Settings validates it; the file is untouched on error
    assistant config set routes.fr.region fr-fr
    assistant config get search               # the value in force (ASSISTANT_* > file > default)

A key is a field of `Settings`, or `routes.CODE.FIELD` for a field of a language's `RouteConfig`; a misspelled
one is answered with the nearest valid key. Edits go through tomlkit, so the user's comments and layout stay, and
a key that `init` wrote commented out is set on the line below its commented default. The file is replaced
atomically, never left half written.
"""

from __future__ import annotations

import os
import re
import tempfile
import textwrap
import typing
from pathlib import Path
from typing import Annotated, Any

import tomlkit
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from assistant.errors import AssistantError, BadInput
from assistant.settings import ENV_PREFIX, RouteConfig, Settings, did_you_mean, read_config

_TABLES = ("routes",)  # fields that are TOML tables, set one `routes.CODE.FIELD` at a time
_UNSET = "(not set)"


def key_field(key: str) -> tuple[tuple[str, ...], FieldInfo]:
    """The TOML path of `key` and the field that validates it; AssistantError with the nearest key on a typo."""
    parts = tuple(key.split("."))
    if parts[0] == "routes" and len(parts) == 3 and parts[2] in RouteConfig.model_fields:
        return parts, RouteConfig.model_fields[parts[2]]
    if len(parts) == 1 and parts[0] in Settings.model_fields:
        return parts, Settings.model_fields[parts[0]]
    valid = [k for k in Settings.model_fields if k not in _TABLES]
    if parts[0] == "routes" and len(parts) == 3:
        fix = did_you_mean(key, [f"routes.{parts[1]}.{f}" for f in RouteConfig.model_fields])
    elif parts[0] == "routes":
        fix = "a route is set one field at a time: routes.CODE.FIELD, e.g. routes.fr.region"
    else:
        fix = did_you_mean(key, valid)
    raise BadInput(f"unknown setting {key!r} — {fix}")


def parse_value(key: str, raw: str) -> Any:
    """The value `raw` (as typed on a command line) stands for, as Settings would validate it for `key`."""
    parts, field = key_field(key)
    if parts[0] in _TABLES and len(parts) == 1:
        raise BadInput(f"{key} is a table — set one of its fields, e.g. routes.fr.region fr-fr")
    if not raw.strip():
        raise BadInput(f"an empty value for {key} — `assistant config unset {key}` returns it to its default")
    kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation  # ge=1, le=10…
    adapter: TypeAdapter[Any] = TypeAdapter(kind)
    try:
        value = adapter.validate_python(raw)
    except ValidationError as e:
        message = e.errors()[0]["msg"]
        raise BadInput(f"bad value for {key}: {message} — the config file is left as it was") from None
    return str(value) if isinstance(value, Path) else value


def set_value(path: Path, key: str, raw: str) -> Any:
    """Validate `raw` for `key` and write it to the config file at `path` (created if absent); the value set."""
    value = parse_value(key, raw)
    parts, _ = key_field(key)
    text = _read(path)
    doc = tomlkit.parse(text)
    if len(parts) == 1 and key not in doc:
        edited = _below_default(text, key, f"{key} = {tomlkit.item(value).as_string()}")
        if edited is not None:
            _write(path, edited)
            return value
    table: Any = doc
    for part in parts[:-1]:
        table = table.setdefault(part, tomlkit.table(is_super_table=part in _TABLES))
    table[parts[-1]] = value
    _write(path, tomlkit.dumps(doc))
    return value


def unset_value(path: Path, key: str) -> bool:
    """Remove `key` from the config file at `path`, so that its default applies; False if it was not set there.
    A key that is no setting is removed too when the file has it (a typo that load-time warnings name)."""
    text = _read(path)
    doc = tomlkit.parse(text)
    parts: tuple[str, ...] = (key,) if key in doc else key_field(key)[0]
    tables: list[Any] = [doc]
    for part in parts[:-1]:
        if part not in tables[-1]:
            return False
        tables.append(tables[-1][part])
    if parts[-1] not in tables[-1]:
        return False
    del tables[-1][parts[-1]]
    for table, part in zip(reversed(tables[:-1]), reversed(parts[:-1]), strict=True):  # an emptied [routes.fr] goes too
        if not table[part]:
            del table[part]
    _write(path, tomlkit.dumps(doc))
    return True


def value_in_force(shown: dict[str, Any], key: str) -> Any:
    """The value of `key` in `shown` (settings as `assistant config` shows them: routes as dicts, the key masked)."""
    parts, _ = key_field(key)
    value: Any = shown
    for part in parts:
        value = value.get(part) if isinstance(value, dict) else None
    return value


def overriding_variable(key: str, environ: typing.Mapping[str, str] = os.environ) -> str | None:
    """The ASSISTANT_* variable that overrides `key` of the config file, if one is set."""
    name = ENV_PREFIX + key.upper()
    return next((var for var in environ if var.upper() == name), None) if "." not in key else None


def template() -> str:
    """A config.toml with every key, its description and its default, commented out."""
    lines = [
        "# search-assistant settings: every key with its default, commented out. Uncomment a line to change it,",
        "# or run `assistant config set KEY VALUE`. Precedence: flag > ASSISTANT_* variable > this file > default.",
        "",
    ]
    for name, field in Settings.model_fields.items():
        if name not in _TABLES:
            about = textwrap.wrap(_about(name, field), 116)
            lines += [*(f"# {line}" for line in about), f"# {name} = {_toml(field.default)}", ""]
    routes = _about("routes", Settings.model_fields["routes"])
    lines += [f"# {routes}; CODE is a language code, e.g. fr", "# [routes.CODE]"]
    for name, field in RouteConfig.model_fields.items():
        lines += [f"# {name} = {_toml(field.default)}  # {_about(name, field)}"]
    return "\n".join(lines) + "\n"


def write_template(path: Path, force: bool) -> None:
    """Write `template()` to `path`; an existing file is replaced only with `force`."""
    if path.exists() and not force:
        raise BadInput(f"{path} exists — `assistant config` shows it, `assistant config init --force` replaces it")
    _write(path, template())


def _about(name: str, field: FieldInfo) -> str:
    about = field.description or name.replace("_", " ")
    choices = [c for c in typing.get_args(field.annotation) if isinstance(c, str)]
    if typing.get_origin(field.annotation) is typing.Literal:
        about += f" (one of: {', '.join(choices)})"
    return about


def _toml(value: Any) -> str:
    return _UNSET if value is None else tomlkit.item(value).as_string()


def _below_default(text: str, key: str, line: str) -> str | None:
    """`text` with `line` under the commented-out default of `key` (as `template()` writes it), if the top-level
    table has one."""
    lines = text.splitlines(keepends=True)
    for i, current in enumerate(lines):
        if current.lstrip().startswith("["):  # past the top-level table
            return None
        if re.match(rf"#\s*{re.escape(key)}\s*=", current.lstrip()):
            end = "" if current.endswith("\n") else "\n"
            return "".join([*lines[: i + 1], end, line, "\n", *lines[i + 1 :]])
    return None


def _read(path: Path) -> str:
    read_config(path)  # a file that is not TOML: the error that names its line
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ""


def _write(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a temporary file, then a rename)."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False, suffix=".tmp") as f:
            temporary = Path(f.name)
            f.write(text)
        if path.exists():  # keep the file's mode; a new one stays private to its owner (it may hold api_key)
            temporary.chmod(path.stat().st_mode)
        os.replace(temporary, path)
    except OSError as e:
        if temporary is not None:
            temporary.unlink(missing_ok=True)
        raise AssistantError(f"cannot write {path}: {e.strerror or e} — check the config dir's permissions") from None
