"""Listings as a script, a pipe and a person read them: `--json` on models, history, config and index search;
piped, one whole tab-separated line a row; in an 80-column terminal (a real pseudo-terminal, read through a
terminal emulator), a table that wraps but never cuts a name or a path with "…"."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pexpect
import pyte
import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.history import ChatStore, ChatTurn
from assistant.models.presets import PRESETS, local_path

runner = CliRunner()
LONG_QUESTION = "Which river does https://en.wikipedia.org/wiki/Kingston_upon_Hull_(city_and_port) say flows by it?"


def on_a_terminal(*args: str, columns: int = 80) -> list[str]:
    """The screen lines a user sees after `assistant ARGS` in a terminal `columns` wide (the exit status checked)."""
    screen = pyte.Screen(columns, 200)
    stream = pyte.Stream(screen)
    environ = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    child = pexpect.spawn(
        sys.executable, ["-m", "assistant", *args], env=environ, encoding="utf-8", dimensions=(200, columns), timeout=60
    )
    stream.feed(child.read())
    child.close()
    lines = [line.rstrip() for line in screen.display]
    while lines and not lines[-1]:
        lines.pop()
    assert child.exitstatus == 0, "\n".join(lines)
    return lines


def unwrapped(lines: list[str], columns: int = 80) -> str:
    """The text with the terminal's wrapping of full-width lines undone (as a path printed whole comes back)."""
    return "".join(line + ("" if len(line) == columns else "\n") for line in lines)


def test_models_json_is_every_preset_with_where_it_is():
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert [m["name"] for m in found] == list(PRESETS), found
    keys = {"name", "present", "path", "size_mb", "license", "source", "description"}
    assert all(set(m) == keys for m in found), found
    smol = next(m for m in found if m["name"] == "smollm2-135m")
    assert smol["present"] is True and smol["path"] == str(local_path(PRESETS["smollm2-135m"])), smol
    assert all(m["present"] is (m["path"] is not None) for m in found), found


def test_piped_models_are_whole_tab_separated_lines():
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert [row[0] for row in rows] == list(PRESETS), result.stdout
    assert all(len(row) == 6 for row in rows) and "…" not in result.stdout, result.stdout
    smol = next(row for row in rows if row[0] == "smollm2-135m")
    assert smol[1] == str(local_path(PRESETS["smollm2-135m"])), "present: the whole path"


def test_models_in_an_80_column_terminal_cut_no_name_or_path():
    lines = on_a_terminal("models")
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    assert "…" not in text, text
    for name in PRESETS:
        assert any(f"│ {name} " in line for line in lines), f"{name} is not whole on one line:\n{text}"
    path = str(local_path(PRESETS["smollm2-135m"]))
    assert f"smollm2-135m: {path}" in unwrapped(lines), text


@pytest.fixture
def chats(isolated: Path) -> ChatStore:
    """Two saved conversations, the second opened with a long question."""
    store = ChatStore.default()
    first = store.add(None, ChatTurn("What is the capital of Colombia?", "Bogotá [1]", [{"n": 1, "id": "b"}], "m"))
    store.add(first, ChatTurn("and its population?", "About 7 million [1]", [], "m"))
    store.add(None, ChatTurn(LONG_QUESTION, "The Humber.", [], "m"))
    return store


def test_history_json_lists_and_shows_conversations(chats: ChatStore):
    result = runner.invoke(app, ["history", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(c["id"], c["turns"], c["first_question"]) for c in listed] == [
        (1, 2, "What is the capital of Colombia?"),
        (2, 1, LONG_QUESTION),
    ], listed
    assert all(set(c) == {"id", "started", "turns", "first_question"} for c in listed), listed
    result = runner.invoke(app, ["history", "1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["id"] == 1 and [t["answer"] for t in shown["turns"]] == ["Bogotá [1]", "About 7 million [1]"]
    assert shown["turns"][0]["sources"] == [{"n": 1, "id": "b"}], shown
    assert set(shown["turns"][0]) == {"question", "answer", "sources", "model", "time"}, shown


def test_history_json_with_no_chats_is_an_empty_list():
    result = runner.invoke(app, ["history", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout) == [], result.output


def test_history_piped_and_in_an_80_column_terminal_keeps_the_question_whole(chats: ChatStore):
    piped = runner.invoke(app, ["history"])
    assert piped.exit_code == 0, piped.output
    rows = [line.split("\t") for line in piped.stdout.splitlines()]
    assert [(row[0], row[2], row[3]) for row in rows] == [
        ("1", "2", "What is the capital of Colombia?"),
        ("2", "1", LONG_QUESTION),
    ], piped.stdout
    lines = on_a_terminal("history")
    text = "\n".join(lines)
    assert "…" not in text and all(len(line) <= 80 for line in lines), text
    cells = "".join(line.split("│")[-2].strip() for line in lines if line.count("│") > 4)
    assert "".join(LONG_QUESTION.split()) in "".join(cells.split()), f"the question is folded, not cut:\n{text}"


def test_index_search_json_is_the_hits_with_their_text(index: Path):
    result = runner.invoke(app, ["index", "search", "capital of Colombia", "--index", str(index), "--json", "-k", "2"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.stdout)
    assert len(hits) == 2 and all(set(h) == {"id", "title", "url", "snippet", "text"} for h in hits), hits
    assert hits[0]["title"] == "Bogotá" and "capital" in hits[0]["text"], hits[0]
    plain = runner.invoke(app, ["index", "search", "capital of Colombia", "--index", str(index), "-k", "2"])
    assert plain.exit_code == 0 and plain.stdout.startswith(f"{hits[0]['id']}\tBogotá\t"), plain.output
