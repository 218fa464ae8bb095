"""`assistant eval`: dataset formats, the three modes over a real SQLite index, scores, report files, resume.

The runner is driven by the scripted fake model (answers in the order asked: mode by mode, question by
question); the command by the scripted OpenAI-compatible server of tests/test_batch.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.batch import PerThread
from assistant.cli import app
from assistant.errors import AssistantError
from assistant.evals.datasets import load_dataset
from assistant.evaluate import EvalRun, run_config
from assistant.runner import Assistant
from assistant.settings import load_settings
from tests.test_batch import Server, running_server

DATA = Path(__file__).parent / "data"
runner = CliRunner()
COLOMBIA = "triviaqa-test_3815"
HUMBER = "triviaqa-test_10503"


@dataclass
class Recorder:
    """A Progress that keeps what it is told."""

    total: int | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def start(self, total: int) -> None:
        self.total = total

    def row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.fixture
def server() -> Iterator[Server]:
    """The scripted OpenAI-compatible server of tests/test_batch.py."""
    with running_server() as script:
        yield script


@pytest.fixture
def two_questions(tmp_path: Path) -> Path:
    """Colombia then Humber, from tests/data/questions.jsonl."""
    records = {json.loads(line)["id"]: line for line in (DATA / "questions.jsonl").read_text().splitlines()}
    path = tmp_path / "two.jsonl"
    path.write_text(records[COLOMBIA] + "\n" + records[HUMBER] + "\n", encoding="utf-8")
    return path


def eval_run(fake_model, index: Path, dataset: Path, out: Path, modes: list[str]) -> EvalRun:
    settings = load_settings(search="local", index=index, cache_ttl=0, loop="multi")  # the fake plays a trusted model
    assistant = Assistant.from_settings(settings, model=fake_model)
    return EvalRun(load_dataset(dataset), modes, out, PerThread(lambda: assistant, [assistant]))


# --- datasets --------------------------------------------------------------------------------------------------


def test_jsonl_formats_are_detected_and_bad_lines_listed_by_number(tmp_path: Path):
    src = tmp_path / "mixed.jsonl"
    src.write_text(
        "\n".join(
            [
                '{"id": "o1", "question": "Q1?", "answers": ["A1", "a one"]}',
                '{"id": "f1", "question": "Q2?", "golden_answers": ["A2"]}',
                '{"question_id": "h1", "question": "Q3?", "answer": {"value": "A3", "aliases": ["A3", "Three"]}}',
                "{broken",
                '{"id": "x", "question": "Q5?"}',
                '{"id": "o1", "question": "again?", "answers": ["A"]}',
            ]
        ),
        encoding="utf-8",
    )
    task = load_dataset(src)
    assert [(e.id, e.answers) for e in task.examples] == [
        ("o1", ["A1", "a one"]),
        ("f1", ["A2"]),
        ("h1", ["A3", "Three", "A3"]),
    ]
    assert [p.split(":")[0] for p in task.problems] == ["line 4", "line 5", "line 6"]
    assert "duplicate id 'o1'" in task.problems[2]


def test_a_one_line_triviaqa_file_is_detected(tmp_path: Path):
    data = json.loads((DATA / "triviaqa-official-sample.json").read_text(encoding="utf-8"))
    src = tmp_path / "one-line.json"
    src.write_text(json.dumps(data), encoding="utf-8")
    assert load_dataset(src)[0].id == "tc_33"


def test_limit_and_seed_pick_the_same_questions_every_time(tmp_path: Path):
    src = tmp_path / "many.jsonl"
    records = [{"id": f"q{i}", "question": f"Q{i}?", "answers": ["a"]} for i in range(20)]
    src.write_text("".join(json.dumps(r) + "\n" for r in records))
    task = load_dataset(src)
    assert [e.id for e in task.select(3).examples] == ["q0", "q1", "q2"]
    sample = [e.id for e in task.select(3, seed=1).examples]
    assert sample == [e.id for e in load_dataset(src).select(3, seed=1).examples] and len(set(sample)) == 3
    assert sample != [e.id for e in task.select(3, seed=2).examples] and sample != ["q0", "q1", "q2"]
    assert len(task.select(seed=1)) == 20


def test_missing_or_empty_datasets_are_clear_errors(tmp_path: Path):
    with pytest.raises(AssistantError, match="dataset not found"):
        load_dataset(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text('{"question": "Q?"}\n')
    with pytest.raises(AssistantError, match="no questions with answers .*line 1: no gold answers"):
        load_dataset(tmp_path / "empty.jsonl")


# --- the runner ------------------------------------------------------------------------------------------------


def test_three_modes_are_scored_and_reported(fake_model, index: Path, two_questions: Path, tmp_path: Path):
    fake_model.enqueue(
        "Answer: Paris",  # closed, Colombia
        "Answer: The Thames",  # closed, Humber
        "Answer: Bogotá [1]\nExplanation: the capital [1].",  # rag, Colombia
        "Answer: the North Sea",  # rag, Humber
        "Answer: Bogotá [1]",  # search, Colombia
        "Answer: The Humber [1]\nExplanation: Trent and Ouse form the Humber [1].",  # search, Humber
    )
    out = tmp_path / "run"
    progress = Recorder()
    run = eval_run(fake_model, index, two_questions, out, ["closed", "rag", "search"])
    rows = run.run(progress)
    assert progress.total == 6 and len(progress.rows) == 6
    by = {(r["id"], r["mode"]): r for r in rows}
    assert by[(COLOMBIA, "closed")]["em"] == 0.0 and by[(COLOMBIA, "closed")]["answer_in_context"] is None
    assert by[(COLOMBIA, "closed")]["steps"] == 0 and by[(COLOMBIA, "closed")]["sources"] == []
    assert by[(COLOMBIA, "rag")]["em"] == 1.0 and by[(COLOMBIA, "rag")]["answer_in_context"] is True
    assert by[(COLOMBIA, "rag")]["queries"] == ["What is the capital of Colombia?"]
    assert by[(COLOMBIA, "rag")]["citation_right"] is True, "source [1] holds Bogotá"
    assert by[(COLOMBIA, "closed")]["citation_right"] is None, "no citation, no precision"
    assert by[(HUMBER, "rag")]["em"] == 0.0 and by[(HUMBER, "rag")]["answer_in_context"] is True  # a reading miss
    assert by[(HUMBER, "search")]["prediction"] == "The Humber" and by[(HUMBER, "search")]["match"] == 1.0
    assert all(r["prompt_tokens"] > 0 and r["seconds"] >= 0 and r["error"] is None for r in rows)
    assert [r["mode"] for r in rows] == ["closed"] * 2 + ["rag"] * 2 + ["search"] * 2

    from assistant.evals.report import write_report

    summary = write_report(out, rows, run.modes, {"model": "fake", "dataset": str(two_questions)})
    assert summary["modes"]["closed"]["em"] == 0.0 and summary["modes"]["rag"]["em"] == 50.0
    assert summary["modes"]["search"]["em"] == 100.0 and summary["modes"]["rag"]["answer_in_context"] == 100.0
    uplift = summary["uplift"]["search_vs_closed"]["em"]
    assert (uplift["mean"], uplift["low"], uplift["high"], uplift["n"]) == (100.0, 100.0, 100.0, 2)
    assert summary["uplift"]["search_vs_rag"]["em"]["mean"] == 50.0
    assert summary["modes"]["rag"]["citation_precision"] == 100.0 and summary["modes"]["closed"]["cited"] == 0
    from assistant.evaluate import code_version

    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?|\d+\.\d+\.\d+", code_version()), code_version()
    assert {r["code"] for r in rows} == {code_version()}, "every row names the code that wrote it"
    assert f"Rows written by the code of: {code_version()}" in (out / "report.md").read_text()
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "| search | 2 | 100.0 |" in md and "| search − closed | 2 | +100.0 [100.0, 100.0]" in md
    assert json.loads((out / "report.json").read_text())["modes"]["rag"]["n"] == 2
    png = (out / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_an_interrupted_eval_resumes_only_the_missing_rows(fake_model, index: Path, two_questions: Path, tmp_path):
    out = tmp_path / "run"
    fake_model.enqueue("Answer: Paris", "Answer: Thames", "Answer: Bogotá [1]", "Answer: Humber [1]")
    eval_run(fake_model, index, two_questions, out, ["closed", "search"]).run()
    results = out / "results.jsonl"
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    results.write_text("".join(lines[:2]) + lines[2][:40], encoding="utf-8")  # killed while writing row 3
    fake_model.history.clear()
    fake_model.enqueue("Answer: Bogotá [1]", "Answer: Humber [1]")
    progress = Recorder()
    rows = eval_run(fake_model, index, two_questions, out, ["closed", "search"]).run(progress)
    assert len(fake_model.history) == 2 and progress.total == 2
    assert progress.notes and "line 3 was cut off mid-write" in progress.notes[0]
    assert sorted((r["id"], r["mode"]) for r in rows) == sorted(
        (q, m) for q in (COLOMBIA, HUMBER) for m in ("closed", "search")
    )
    assert len(results.read_text(encoding="utf-8").splitlines()) == 4
    assert [r["em"] for r in rows if r["mode"] == "search"] == [1.0, 1.0]


def test_a_single_step_search_reuses_the_rag_rows(fake_model, index: Path, two_questions: Path, tmp_path: Path):
    fake_model.enqueue("Answer: Bogotá [1]", "Answer: the North Sea")  # rag only: search is not asked again
    settings = load_settings(search="local", index=index, cache_ttl=0, loop="single")
    assistant = Assistant.from_settings(settings, model=fake_model)
    out = tmp_path / "run"
    progress = Recorder()
    rows = EvalRun(load_dataset(two_questions), ["rag", "search"], out, PerThread(lambda: assistant, [assistant])).run(
        progress
    )
    assert len(fake_model.history) == 2 and progress.total == 2
    search = [r for r in rows if r["mode"] == "search"]
    assert [r["prediction"] for r in search] == ["Bogotá", "North Sea"]
    assert all(r["same_as"] == "rag" for r in search)
    assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == 4


# --- the command -----------------------------------------------------------------------------------------------


def eval_args(server: Server, dataset: Path, out: Path, index: Path, *more: str) -> list[str]:
    return [
        "eval",
        str(dataset),
        "--out",
        str(out),
        "--backend",
        "openai",
        "--base-url",
        server.url,
        "--search",
        "local",
        "--index",
        str(index),
        "--loop",
        "multi",  # the server's model is of unknown kind: trusted with tools only when asked
        *more,
    ]


def test_eval_command_writes_results_and_report_and_resumes(server: Server, index: Path, two_questions, tmp_path):
    server.answers = {"Trent and Ouse": "Answer: Humber", "Colombia": "Answer: Bogota"}
    out = tmp_path / "run"
    result = runner.invoke(app, eval_args(server, two_questions, out, index, "--mode", "all"))
    assert result.exit_code == 0, result.output
    assert "| closed | 2 | 100.0 |" in result.stdout and "search − closed" in result.stdout
    assert {p.name for p in out.iterdir()} >= {"results.jsonl", "report.md", "report.json", "report.png", "run.json"}
    assert len(server.questions) == 6
    again = runner.invoke(app, eval_args(server, two_questions, out, index, "--mode", "all"))
    assert again.exit_code == 0 and "0 rows written" in again.output, again.output
    assert len(server.questions) == 6
    other = runner.invoke(app, [*eval_args(server, two_questions, out, index), "--model", "other"])
    message = " ".join(other.output.split())  # the error line is wrapped to the terminal's width
    assert other.exit_code == 2 and "holds another run (model: 'default' there, 'other' now)" in message, message


def test_eval_modes_that_search_need_a_search_backend(two_questions: Path):
    result = runner.invoke(app, ["eval", str(two_questions), "--mode", "rag", "--search", "none"])
    assert result.exit_code == 2 and "--mode rag needs search" in result.output, result.output
    result = runner.invoke(app, ["eval", str(two_questions), "--mode", "everything"])
    assert result.exit_code == 2 and "unknown --mode 'everything'" in result.output, result.output


def test_failures_are_split_by_cause():
    from assistant.evals.report import failures

    rows = [
        {"em": 1.0, "match": 1.0, "answer_in_context": True},
        {"em": 0.0, "match": 0.0, "answer_in_context": False},
        {"em": 0.0, "match": 0.0, "answer_in_context": True},
        {"em": 0.0, "match": 1.0, "answer_in_context": True},
        {"em": 0.0, "match": 1.0, "answer_in_context": True},
    ]
    assert failures(rows) == {"retrieval_missed": 1, "in_context_not_extracted": 1, "extracted_but_not_exact": 2}
    assert failures([{"em": 0.0, "match": 0.0, "answer_in_context": None}]) is None


def test_a_torn_run_json_is_a_clear_error_not_a_traceback(server: Server, index: Path, two_questions, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text('{\n  "dataset": "/data/two.jsonl",\n  "mod', encoding="utf-8")  # killed mid-write
    result = runner.invoke(app, eval_args(server, two_questions, out, index))
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and not isinstance(result.exception, Exception), message
    assert f"{out / 'run.json'} is unreadable" in message and "pass another --out" in message, message
    report = subprocess.run(
        [sys.executable, "-m", "assistant.evals.report", str(out)], capture_output=True, text=True, timeout=60
    )
    assert report.returncode == 1 and "Traceback" not in report.stderr, report.stderr
    assert f"{out / 'run.json'} is unreadable" in report.stderr, report.stderr


def test_the_config_check_runs_under_the_lock(server: Server, index: Path, two_questions, tmp_path):
    """Two evals on one --out: the second must not write run.json while the first holds results.jsonl."""
    from assistant.resultlog import ResultLog

    out = tmp_path / "run"
    with ResultLog(out / "results.jsonl", key=lambda r: (r["id"], r["mode"])):  # a first eval, just started
        result = runner.invoke(app, [*eval_args(server, two_questions, out, index), "--model", "other"])
    message = " ".join(result.output.split())
    assert result.exit_code == 1 and "another run" in message, message
    assert not (out / "run.json").exists(), "the second run wrote its settings over the first's"
    assert server.questions == []


def test_a_resumed_eval_must_match_every_setting_that_changes_answers(
    server: Server, index: Path, two_questions, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    out = tmp_path / "run"
    result = runner.invoke(app, eval_args(server, two_questions, out, index, "--mode", "closed"))
    assert result.exit_code == 0, result.output
    changes = {"LANG": ("fr", "'auto' there, 'fr' now"), "TEMPERATURE": ("0.7", "0.0 there, 0.7 now")}
    changes |= {"READ_PAGES": ("0", "2 there, 0 now"), "N_CTX": ("2048", "4096 there, 2048 now")}
    changes |= {"RETRIEVER": ("bm25", "'hybrid' there, 'bm25' now")}
    for name, (value, said) in changes.items():
        with monkeypatch.context() as m:
            m.setenv(f"ASSISTANT_{name}", value)
            result = runner.invoke(app, eval_args(server, two_questions, out, index, "--mode", "closed"))
        message = " ".join(result.output.split())
        assert result.exit_code == 2, f"{name}: {message}"
        assert f"holds another run ({name.lower()}: {said})" in message, message
    assert len(server.questions) == 2


def test_compare_names_the_rows_that_changed_and_counts_the_rest(tmp_path: Path):
    from assistant.evals.compare import compare

    row = {"id": "q1", "mode": "rag", "prediction": "Bogotá", "em": 1.0, "sources": [{"id": "p1"}], "seconds": 3.0}
    before, after = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    before.write_text(json.dumps(row) + "\n" + json.dumps({**row, "id": "q2"}) + "\n")
    changed = {**row, "id": "q2", "prediction": "Bogota", "sources": [], "seconds": 9.0}
    after.write_text(json.dumps({**row, "seconds": 5.0}) + "\n" + json.dumps(changed) + "\n")
    lines = compare(before, after).splitlines()
    assert lines[0].startswith("q2 (rag): ") and '"prediction": ["Bogotá", "Bogota"]' in lines[0]
    assert '"sources": [["p1"], []]' in lines[0] and "seconds" not in lines[0]
    assert lines[-1] == "1 rows identical, 1 differ, 0 in only one run"


def test_compare_gives_the_paired_change_of_each_mode_over_the_questions_both_runs_answered(tmp_path: Path):
    from assistant.evals.compare import paired_change

    def rows(ems: list[float], mode: str = "rag", error: int | None = None) -> str:
        return "".join(
            json.dumps({"id": f"q{i}", "mode": mode, "em": em, "f1": em, "error": "x" if i == error else None}) + "\n"
            for i, em in enumerate(ems)
        )

    before, after = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    before.write_text(rows([0, 0, 1, 1]) + rows([1], mode="closed"))
    after.write_text(rows([1, 1, 1, 0, 1], error=3) + rows([1], mode="plain"))  # q3 failed, q4 is new
    table = paired_change(before, after).splitlines()
    assert table[2] == "| rag | 3 | 33.3 | 100.0 | +66.7 [+0.0, +100.0] | +66.7 [+0.0, +100.0] |", table
    assert len(table) == 3, "a mode of one run alone is not compared"


def test_run_json_names_the_index_by_its_full_path(fake_model, index: Path, tmp_path: Path, monkeypatch):
    # a relative --index resumes from another folder only when the run names the file itself
    monkeypatch.chdir(index.parent)
    settings = load_settings(search="local", index=Path(index.name), cache_ttl=0)
    config = run_config(Assistant.from_settings(settings, model=fake_model), tmp_path / "q.jsonl")
    assert config["index"] == str(index.resolve())
