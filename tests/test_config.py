"""Settings at the CLI edge: a broken or misspelled config.toml, bad environment variables, error text that looks
like Rich markup, `assistant config init/set/get/unset` and `--json`, and the API key kept to itself. Every failure
is one line, never a traceback, and a refused edit leaves config.toml as it was."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.settings import RouteConfig, Settings, load_settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

runner = CliRunner()


def write_config(home: Path, text: str) -> Path:
    path = home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def flat(output: str) -> str:
    """The output with the terminal's line wrapping undone."""
    return " ".join(output.split())


@pytest.mark.parametrize("command", [["config"], ["index", "search", "night watch"]])
def test_a_malformed_config_file_is_one_line_naming_the_file_and_line(isolated: Path, command: list[str]):
    path = write_config(isolated, 'model = "qwen"\nsearch = "local\n')
    result = runner.invoke(app, command)
    assert result.exit_code == 2 and not isinstance(result.exception, Exception), result.output
    assert f"{path}" in flat(result.output) and "line 2" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_config_file_that_is_not_utf8_is_one_line_naming_it(isolated: Path):
    path = write_config(isolated, "")
    path.write_bytes(b'model = "qwen"\nsearch = "loc\xffal"\n')
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2 and not isinstance(result.exception, Exception), result.output
    assert "is not UTF-8 text (byte" in flat(result.output) and "Traceback" not in result.output


def test_config_reports_a_bad_value_as_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSISTANT_MAX_STEPS", "99")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2 and "bad setting max_steps" in result.output, result.output


def test_error_text_that_looks_like_markup_is_printed_as_is():
    result = runner.invoke(app, ["models", "pull", "[/x]"])
    assert result.exit_code == 2 and "unknown preset '[/x]'" in result.output, result.output
    result = runner.invoke(app, ["models", "pull", "[bold]q"])
    assert result.exit_code == 2 and "unknown preset '[bold]q'" in result.output, result.output


def test_a_misspelled_config_key_is_named_with_the_nearest_valid_one(isolated: Path):
    path = write_config(isolated, "max_step = 5\nsearch = 'local'\n")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    message = flat(result.stderr)
    assert f"unknown key 'max_step' in {path}" in message and "did you mean 'max_steps'?" in message, message
    assert 'search = "local"' in result.stdout


def test_an_environment_value_no_source_can_parse_is_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSISTANT_ROUTES", "not json")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2 and not isinstance(result.exception, Exception), result.output
    assert 'field "routes"' in flat(result.output) and "ASSISTANT_* variable" in flat(result.output)
    assert "Traceback" not in result.output


def test_a_misspelled_environment_variable_is_named_with_the_nearest_valid_one(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSISTANT_SERACH", "local")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    message = flat(result.stderr)
    assert "unknown variable ASSISTANT_SERACH" in message and "did you mean ASSISTANT_SEARCH?" in message, message


def test_known_keys_and_variables_raise_no_warning(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    write_config(isolated, "max_steps = 2\n[routes.fr]\nregion = 'fr-fr'\n")
    monkeypatch.setenv("ASSISTANT_SEARCH", "local")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0 and result.stderr == "", result.output


def test_config_masks_the_api_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSISTANT_API_KEY", "sk-proj-0123456789secretabcd")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    assert "0123456789secret" not in result.output and 'api_key = "sk-…abcd"' in result.output, result.output


def uncommented(template: str) -> str:
    """The template with every `# key = default` line made active (keys without a default stay comments)."""
    lines = template.split("\n[routes")[0].splitlines()
    return "\n".join(line[2:] if re.match(r"# \w+ = ", line) and "(not set)" not in line else line for line in lines)


def test_config_init_writes_every_key_with_its_default_and_never_overwrites(isolated: Path):
    result = runner.invoke(app, ["config", "init"])
    path = isolated / "config" / "config.toml"
    assert result.exit_code == 0 and f"wrote {path}" in result.output, result.output
    text = path.read_text(encoding="utf-8")
    assert tomllib.loads(text) == {}, "everything is commented out: the file changes nothing"
    written = set(re.findall(r"^# (\w+) = ", text.split("[routes.CODE]")[0], re.M))
    assert written == set(Settings.model_fields) - {"routes"}, written
    assert all(f"# {field} = " in text.split("[routes.CODE]")[1] for field in RouteConfig.model_fields)
    defaults = tomllib.loads(uncommented(text))
    assert defaults == {k: v for k, v in Settings().model_dump(mode="json").items() if v not in (None, {})}, defaults
    shown = runner.invoke(app, ["config"])
    assert shown.exit_code == 0 and shown.stderr == "", shown.output
    path.write_text("max_steps = 2\n", encoding="utf-8")
    again = runner.invoke(app, ["config", "init"])
    assert again.exit_code == 2 and "exists" in again.output and "--force" in flat(again.output), again.output
    assert path.read_text(encoding="utf-8") == "max_steps = 2\n", "the user's file is left alone"
    forced = runner.invoke(app, ["config", "init", "--force"])
    assert forced.exit_code == 0 and path.read_text(encoding="utf-8") == text, forced.output


def test_config_set_validates_writes_under_the_commented_default_and_get_reads_it(isolated: Path):
    assert runner.invoke(app, ["config", "init"]).exit_code == 0
    result = runner.invoke(app, ["config", "set", "max_steps", "5"])
    assert result.exit_code == 0 and result.output.startswith("max_steps = 5 in "), result.output
    result = runner.invoke(app, ["config", "set", "allow_private", "yes"])
    assert result.exit_code == 0, result.output
    text = (isolated / "config" / "config.toml").read_text(encoding="utf-8")
    assert "# max_steps = 3\nmax_steps = 5\n" in text and "# allow_private = false\nallow_private = true\n" in text
    assert text.startswith("# search-assistant settings"), "the comments stay"
    got = runner.invoke(app, ["config", "get", "max_steps"])
    assert got.exit_code == 0 and got.output == "5\n", got.output
    assert runner.invoke(app, ["config", "get", "search"]).output == "ddgs,local\n", "text is printed as is"
    assert runner.invoke(app, ["config", "get", "model"]).output == "\n", "an unset value prints nothing"
    assert load_settings().max_steps == 5 and load_settings().allow_private is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["set", "max_steps", "50"], "bad value for max_steps: Input should be less than or equal to 10"),
        (["set", "loop", "many"], "bad value for loop: Input should be 'auto', 'single' or 'multi'"),
        (["set", "temperature", "warm"], "bad value for temperature"),
        (["set", "max_step", "5"], "unknown setting 'max_step' — did you mean 'max_steps'?"),
        (["set", "routes.fr.regoin", "fr-fr"], "did you mean 'routes.fr.region'?"),
        (["set", "routes", "fr"], "set one of its fields, e.g. routes.fr.region"),
        (["set", "model", ""], "`assistant config unset model`"),
        (["get", "serach"], "unknown setting 'serach' — did you mean 'search'?"),
        (["unset", "max_stesp"], "did you mean 'max_steps'?"),
    ],
)
def test_a_bad_value_or_a_misspelled_key_is_one_line_and_the_file_is_untouched(
    isolated: Path, args: list[str], message: str
):
    path = write_config(isolated, "# mine\nmax_steps = 2\n")
    result = runner.invoke(app, ["config", *args])
    assert result.exit_code == 2 and not isinstance(result.exception, Exception), result.output
    assert message in flat(result.output) and "Traceback" not in result.output, result.output
    assert path.read_text(encoding="utf-8") == "# mine\nmax_steps = 2\n"


def test_routes_are_set_and_unset_one_field_at_a_time(isolated: Path):
    path = write_config(isolated, "# mine\nsearch = 'local'  # offline\n")
    assert runner.invoke(app, ["config", "set", "routes.fr.region", "fr-fr"]).exit_code == 0
    assert runner.invoke(app, ["config", "set", "routes.fr.model", "qwen2.5-coder-1.5b"]).exit_code == 0
    assert load_settings().routes["fr"].region == "fr-fr"
    assert runner.invoke(app, ["config", "get", "routes.fr.region"]).output == "fr-fr\n"
    assert "search = 'local'  # offline" in path.read_text(encoding="utf-8"), "the user's lines stay as written"
    for field in ("region", "model"):
        result = runner.invoke(app, ["config", "unset", f"routes.fr.{field}"])
        assert result.exit_code == 0 and "removed" in result.output, result.output
    assert tomllib.loads(path.read_text(encoding="utf-8")) == {"search": "local"}, "an emptied route goes"
    result = runner.invoke(app, ["config", "unset", "routes.fr.region"])
    assert result.exit_code == 0 and "was not set" in result.output, result.output


def test_a_misspelled_key_in_the_file_can_be_unset(isolated: Path):
    path = write_config(isolated, "max_step = 5\nsearch = 'local'\n")
    result = runner.invoke(app, ["config", "unset", "max_step"])
    assert result.exit_code == 0 and "max_step removed" in result.output, result.output
    assert path.read_text(encoding="utf-8") == "search = 'local'\n"
    assert runner.invoke(app, ["config"]).stderr == "", "no warning is left"


def test_config_set_says_when_a_variable_overrides_the_file(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSISTANT_MAX_STEPS", "2")
    result = runner.invoke(app, ["config", "set", "max_steps", "4"])
    assert result.exit_code == 0 and "ASSISTANT_MAX_STEPS is set: it takes precedence" in result.stderr
    assert runner.invoke(app, ["config", "get", "max_steps"]).output == "2\n", "get prints the value in force"


def test_the_api_key_is_masked_in_set_get_and_json(isolated: Path):
    key = "sk-proj-0123456789secretabcd"
    result = runner.invoke(app, ["config", "set", "api_key", key])
    assert result.exit_code == 0 and "sk-…abcd" in result.output and key not in result.output, result.output
    assert key in (isolated / "config" / "config.toml").read_text(encoding="utf-8"), "the file holds the key itself"
    assert runner.invoke(app, ["config", "get", "api_key"]).output == "sk-…abcd\n"
    shown = runner.invoke(app, ["config", "--json"])
    assert shown.exit_code == 0 and key not in shown.output, shown.output
    assert json.loads(shown.stdout)["settings"]["api_key"] == "sk-…abcd"


def test_config_json_is_the_settings_in_force(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    path = write_config(isolated, "max_steps = 2\n[routes.de]\nregion = 'de-de'\n")
    monkeypatch.setenv("ASSISTANT_SEARCH", "local")
    result = runner.invoke(app, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["config_file"] == str(path) and shown["present"] is True, shown
    settings = shown["settings"]
    assert set(settings) == set(Settings.model_fields), settings
    assert settings["max_steps"] == 2 and settings["search"] == "local" and settings["index"] is None, settings
    assert settings["routes"]["de"]["region"] == "de-de", settings


def test_a_bad_variable_is_blamed_on_the_variable_not_on_its_flag(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    """Click fills --max-steps from ASSISTANT_MAX_STEPS too: the message must still name the variable."""
    monkeypatch.setenv("ASSISTANT_MAX_STEPS", "50")
    result = runner.invoke(app, ["ask", "q", "--search", "none"])
    assert result.exit_code == 2 and "fix or unset ASSISTANT_MAX_STEPS" in flat(result.output), result.output
    result = runner.invoke(app, ["ask", "q", "--search", "none", "--max-steps", "60"])
    assert result.exit_code == 2 and "fix the --max-steps flag" in flat(result.output), result.output


@pytest.mark.parametrize(
    ("text", "environ", "fix"),
    [
        ("max_steps = 50\n", {}, "fix it in {path}, or `assistant config unset max_steps`"),
        ("", {"ASSISTANT_MAX_STEPS": "50"}, "fix or unset ASSISTANT_MAX_STEPS"),
        ("[routes.fr]\nregoin = 'fr-fr'\n", {}, "did you mean 'routes.fr.region'?"),
    ],
)
def test_a_bad_setting_names_where_to_fix_it(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, text: str, environ: dict[str, str], fix: str
):
    path = write_config(isolated, text)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 2 and fix.format(path=path) in flat(result.output), result.output
