"""`assistant extract` and `assistant extract-eval`: the scripted fake model stands in for the backend, except in
one end-to-end run with the real bundled SmolLM2. Texts are real passages from the labelled extraction set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.evals.extraction import load_cases

runner = CliRunner()
CASES = {c.id: c for c in load_cases()}
GRENNA = CASES["grennaskolan"].text


@pytest.fixture
def model(fake_model, monkeypatch):
    """The fake model, loaded by every command in place of a real one."""
    monkeypatch.setattr("assistant.models.load_model", lambda settings, spec=None: fake_model)
    return fake_model


def test_prints_json_that_validates_with_non_ascii_kept(model):
    model.enqueue('{"town": "Gränna", "county": "Jönköping County", "founded": 1963}')
    result = runner.invoke(app, ["extract", "--fields", "town:str, county:str, founded:int", GRENNA])
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"town": "Gränna", "county": "Jönköping County", "founded": 1963}\n'
    assert model.history[0][1].json_schema["required"] == ["town", "county", "founded"]


def test_reads_stdin_and_files_and_a_schema_file(model, tmp_path: Path):
    schema = tmp_path / "school.json"
    schema.write_text(json.dumps(CASES["grennaskolan"].schema))
    text = tmp_path / "text.txt"
    text.write_text(GRENNA, encoding="utf-8")
    reply = json.dumps(CASES["grennaskolan"].expected, ensure_ascii=False)
    model.enqueue(reply, reply)
    from_stdin = runner.invoke(app, ["extract", "--schema", str(schema), "-"], input=GRENNA)
    from_file = runner.invoke(app, ["extract", "--schema", str(schema), "--file", str(text), "--no-constrain"])
    for result in (from_stdin, from_file):
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == CASES["grennaskolan"].expected
    assert model.history[0][0][1].content == GRENNA.strip() == model.history[1][0][1].content
    assert model.history[1][1].json_schema is None  # --no-constrain


def test_many_prints_a_list(model):
    model.enqueue('{"items": [{"character": "Prue", "actress": "Shannen Doherty"}]}')
    result = runner.invoke(app, ["extract", "--fields", "character:str, actress:str", "--many", CASES["charmed"].text])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"character": "Prue", "actress": "Shannen Doherty"}]


def test_a_failed_extraction_exits_1_naming_the_field_with_the_raw_output(model):
    model.enqueue('{"founded": "sixties"}', '{"founded": "the sixties"}')
    result = runner.invoke(app, ["extract", "--fields", "founded:int", GRENNA])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert "`founded`" in result.stderr and "not of type 'integer'" in result.stderr
    assert "raw output follows" in result.stderr and '{"founded": "the sixties"}' in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["extract", "--fields", "age:number?, x:text", "t"], "unknown type 'text'"),
        (["extract", "--fields", "a:str", "   "], "the text is empty"),
        (["extract", "--fields", "a:str"], "no text"),
        (["extract", "t"], "pass one of --schema"),
        (["extract", "--fields", "a:str", "--schema", "s.json", "t"], "pass one of --schema"),
        (["extract", "--schema", "/nonexistent/s.json", "t"], "cannot read the schema"),
        (["extract", "--fields", "a:str", "--file", "/nonexistent/t.txt"], "cannot read"),
        (["extract-eval", "--mode", "sometimes"], "unknown --mode"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(model, args: list[str], message: str):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert model.history == []


def test_an_invalid_schema_file_exits_2(model, tmp_path: Path):
    schema = tmp_path / "s.json"
    schema.write_text('{"type": "object", "required": "name"}')
    result = runner.invoke(app, ["extract", "--schema", str(schema), GRENNA])
    assert result.exit_code == 2 and "invalid JSON Schema at required" in result.output, result.output


def test_a_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "in.txt"
    bad.write_bytes(b"Founded in 19\xff63.")
    for args in (["--file", str(bad)], ["--jsonl", str(bad)]):
        result = runner.invoke(app, ["extract", "--fields", "founded:int", *args])
        assert result.exit_code == 2 and "not UTF-8 text (byte 14)" in " ".join(result.output.split()), result.output


def test_jsonl_writes_one_row_per_line_errors_included(model, tmp_path: Path):
    lines = tmp_path / "in.jsonl"
    lines.write_text(
        json.dumps({"text": GRENNA}, ensure_ascii=False) + "\n\n" + CASES["gordon"].text + "\n", encoding="utf-8"
    )
    model.enqueue('{"founded": 1963}', '{"founded": "c. 1691"}', '{"founded": "1720"}')
    result = runner.invoke(app, ["extract", "--fields", "founded:int", "--jsonl", str(lines)])
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[0] == {"line": 1, "data": {"founded": 1963}}
    assert "the text is empty" in rows[1]["error"] and rows[1]["raw"] == ""
    assert "`founded`" in rows[2]["error"] and rows[2]["raw"] == '{"founded": "1720"}'
    assert "3 lines, 2 errors" in result.stderr
    assert model.history[0][0][1].content == GRENNA.strip()  # the "text" of a JSON line, not the line


def test_extract_eval_prints_a_table(model, tmp_path: Path):
    data = tmp_path / "cases.jsonl"
    data.write_text(
        json.dumps({"id": "g", "text": GRENNA, "fields": "founded:int, town:str?", "expected": {"founded": 1963}})
    )
    model.enqueue('{"founded": 1963, "town": "Gränna"}', '{"founded": 1963}')
    out = tmp_path / "rows.jsonl"
    result = runner.invoke(app, ["extract-eval", "--data", str(data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "| fake | constrained | 1 | 100% | 100% | 0.50 | 1.00 | 0.67 |" in result.stdout
    assert "| fake | unconstrained | 1 | 100% | 100% | 1.00 | 1.00 | 1.00 |" in result.stdout
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["mode"] for r in rows] == ["constrained", "unconstrained"] and rows[0]["data"]["town"] == "Gränna"


@pytest.mark.slow
def test_real_model_extracts_from_the_command_line_keeping_non_ascii():
    text = CASES["jacksonville-el"].text  # Greek
    result = runner.invoke(
        app, ["extract", "--model", "smollm2-135m", "--fields", "explorer:str, year_charted:int", text]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"explorer", "year_charted"} and isinstance(data["year_charted"], int)
    assert not data["explorer"].isascii() and data["explorer"] in result.stdout  # printed as is, not as \\u escapes
