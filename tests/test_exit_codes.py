"""The exit codes every command follows (assistant/errors.py, README "Exit codes"), through the real CLI.

`ask` is answered by the scripted fake model, loaded by the CLI in place of a real one, over a real SQLite index
of tests/data; a runtime failure comes from an OpenAI-compatible server that is not there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.errors import Exit
from tests.conftest import FakeModel

README = Path(__file__).parent.parent / "README.md"
COLOMBIA = "What is the capital of Colombia?"
runner = CliRunner()
LOCAL_NO_THRESHOLD = ("--search", "local", "--confidence-threshold", "0")


@pytest.fixture
def model(loaded_model: FakeModel) -> FakeModel:
    """conftest's `loaded_model`, under the name these tests use."""
    return loaded_model


def ask(*args: str) -> list[str]:
    return ["ask", *args, "--model", "smollm2-135m", "--cache-ttl", "0"]


def test_an_answer_that_cites_a_source_holding_it_exits_0(model: FakeModel, index: Path):
    model.enqueue("Answer: Bogotá [1]")
    result = runner.invoke(app, [*ask(COLOMBIA, "--search", "local", "--index", str(index)), "--json"])
    assert result.exit_code == Exit.OK == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["grounded"] is True and answer["sources"][0]["title"] == "Bogotá", answer


@pytest.mark.parametrize(
    ("why", "args", "reply", "note"),
    [
        ("closed-book", ["--search", "none"], "Answer: Bogotá", None),
        ("no source found", ["--search", "local"], "Answer: Bogotá", "no sources were found"),
        ("every backend failed", ["--search", "searxng"], "Answer: Bogotá", "could not reach"),
        # with no confidence threshold: below one, such an answer is uncertain (exit 4, below)
        ("the cited source lacks it", [*LOCAL_NO_THRESHOLD], "Answer: Lima [1]", "do not contain its words"),
        ("it cites nothing that holds it", [*LOCAL_NO_THRESHOLD], "Answer: Lima", "cites no source"),
    ],
)
def test_an_answer_not_from_sources_exits_3_and_the_notes_say_why(
    model: FakeModel, index: Path, why: str, args: list[str], reply: str, note: str | None
):
    question = "zzyzx quux?" if why == "no source found" else COLOMBIA  # no passage of the index matches it
    where = ["--index", str(index), "--searxng-url", "http://127.0.0.1:9", "--fetch-timeout", "2"]
    model.enqueue(reply)
    result = runner.invoke(app, [*ask(question, *args, *where), "--json"])
    assert result.exit_code == Exit.UNSOURCED == 3, f"{why}: {result.output}"
    answer = json.loads(result.stdout)
    assert answer["grounded"] is False, answer
    assert note is None or any(note in n for n in answer["notes"]), answer["notes"]


@pytest.mark.parametrize("hide", [False, True])
def test_an_answer_the_sources_did_not_settle_exits_4_marked_uncertain(model: FakeModel, index: Path, hide: bool):
    model.enqueue("Answer: Lima [1]", "Answer: Quito [2]")  # no source holds either: confidence 0, two looks
    model.enqueue("Answer: Lima [1]", "Answer: Quito [2]")  # the same, on the terminal
    shown = ["--uncertain-answers", "hide", "--second-look"] if hide else ["--second-look"]
    result = runner.invoke(app, [*ask(COLOMBIA, "--search", "local", "--index", str(index), *shown), "--json"])
    assert result.exit_code == Exit.UNCERTAIN == 4, result.output
    answer = json.loads(result.stdout)
    assert answer["uncertain"] is True and answer["confidence"] == 0.0, answer
    assert answer["notes"][0].startswith("uncertain: the sources did not settle this"), answer["notes"]
    assert answer["short_answer"] == ("" if hide else "Lima"), answer
    terminal = runner.invoke(app, ask(COLOMBIA, "--search", "local", "--index", str(index), *shown))
    assert terminal.exit_code == 4, terminal.output
    assert "? uncertain" in terminal.output and "the sources did not settle this" in terminal.output


def test_a_confident_answer_from_sources_exits_0_with_its_confidence(model: FakeModel, index: Path):
    model.enqueue("Answer: Bogotá [1]", probability=0.8)
    result = runner.invoke(app, [*ask(COLOMBIA, "--search", "local", "--index", str(index)), "--json"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert (answer["confidence"], answer["uncertain"]) == (0.9, False), answer


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask"], "Missing argument"),  # Typer's own usage error
        (["ask", "q", "--no-such-flag"], "No such option"),
        (["ask", "   "], "the question is empty"),
        (["ask", "q", "--model", "no-such-preset"], "unknown model"),
        (["ask", "q", "--json", "--events", "--search", "none"], "--json or --events"),
        (["eval", "/nonexistent/qa.jsonl"], "dataset not found"),
    ],
)
def test_bad_input_exits_2(model: FakeModel, args: list[str], message: str):
    result = runner.invoke(app, args)
    assert result.exit_code == Exit.BAD_INPUT == 2, result.output
    assert message in result.output and "Traceback" not in result.output, result.output
    assert model.history == [], "nothing was asked"


def test_a_runtime_failure_exits_1():
    args = ["ask", "q", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--search", "none"]
    result = runner.invoke(app, args)
    assert result.exit_code == Exit.FAILED == 1, result.output
    assert "cannot connect to http://127.0.0.1:9/v1" in " ".join(result.output.split()), result.output


def test_eval_finishes_the_other_rows_then_exits_1_saying_how_many_failed(model: FakeModel, tmp_path: Path):
    data = tmp_path / "qa.jsonl"
    rows = [
        {"question": "Who painted The Night Watch?", "answers": ["Rembrandt"]},
        {"question": "Q2?", "answers": ["x"]},
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model.enqueue("Answer: Rembrandt")  # the second question finds the fake out of replies: its row is an error
    out = tmp_path / "run"
    args = ["eval", str(data), "--mode", "closed", "--out", str(out), "--model", "smollm2-135m", "--search", "none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    said = " ".join(result.stderr.split())
    assert f"error: 1 of 2 rows in {out / 'results.jsonl'} ended in an error" in said, said
    assert "--retry-errors" in said and (out / "report.md").is_file(), "the report is written before the exit"
    written = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [bool(r["error"]) for r in written] == [False, True] and written[0]["em"] == 1.0, written


def test_the_readme_table_lists_every_exit_code_and_no_other():
    section = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n#", 1)[0]
    listed = {int(code) for code in re.findall(r"^\| `(\d+)` \|", section, re.M)}
    assert listed == {int(code) for code in Exit}, section
