"""Settings at the CLI edge: a broken or misspelled config.toml, bad environment variables, error text that looks
like Rich markup, and `assistant config` keeping the API key to itself. Every failure is one line, never a
traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app

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
    assert result.exit_code == 1 and not isinstance(result.exception, Exception), result.output
    assert f"{path}" in flat(result.output) and "line 2" in result.output, result.output
    assert "Traceback" not in result.output


def test_config_reports_a_bad_value_as_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ASSISTANT_MAX_STEPS", "99")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 1 and "bad setting max_steps" in result.output, result.output


def test_error_text_that_looks_like_markup_is_printed_as_is():
    result = runner.invoke(app, ["models", "pull", "[/x]"])
    assert result.exit_code == 1 and "unknown preset '[/x]'" in result.output, result.output
    result = runner.invoke(app, ["models", "pull", "[bold]q"])
    assert result.exit_code == 1 and "unknown preset '[bold]q'" in result.output, result.output


def test_a_misspelled_config_key_is_named_with_the_nearest_valid_one(isolated: Path):
    path = write_config(isolated, "max_step = 5\nsearch = 'local'\n")
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0, result.output
    message = flat(result.stderr)
    assert f"unknown key 'max_step' in {path}" in message and "did you mean 'max_steps'?" in message, message
    assert 'search = "local"' in result.stdout


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
