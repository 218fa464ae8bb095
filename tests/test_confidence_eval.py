"""The confidence side of evals: rows carry it, looks replay any threshold, AUROC, the threshold rule, the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.evals.confidence import at_threshold, auroc, auroc_interval, choose, main, replay, write_replay
from tests.conftest import FakeModel


def row(
    first: float, first_em: float, second: float | None = None, second_em: float = 0.0, stated: bool = False
) -> dict[str, Any]:
    """A row of two looks (one when `second` is None); `stated`: a shown source states the first look's answer."""
    looks = [{"short_answer": "first", "confidence": first, "em": first_em, "supported": stated}]
    looks += (
        [] if second is None else [{"short_answer": "second", "confidence": second, "em": second_em, "supported": True}]
    )
    return {"mode": "search", "confidence": first, "em": first_em, "looks": looks}


def test_a_threshold_replays_the_answer_the_loop_would_give() -> None:
    r = row(0.4, 0.0, 0.8, 1.0)
    assert (replay(r, 0.3).confidence, replay(r, 0.3).correct) == (0.4, False), "the first look reaches it"
    assert (replay(r, 0.5).confidence, replay(r, 0.5).correct) == (0.8, True), "else the more confident look"
    assert replay(row(0.4, 1.0, 0.2, 0.0), 0.5).correct, "a less confident second look is not taken"
    stated = row(0.6, 1.0, 0.9, 0.0, stated=True)
    assert (replay(stated, 0.7).confidence, replay(stated, 0.7).correct) == (0.6, True), "nor one over a stated first"
    agreed = {**stated, "looks": [stated["looks"][0], {**stated["looks"][1], "short_answer": "First"}]}
    assert (replay(agreed, 0.7).confidence, replay(agreed, 0.7).correct) == (0.9, True), "the same answer lends it"


def test_counts_at_a_threshold() -> None:
    rows = [row(0.9, 1.0), row(0.8, 0.0), row(0.3, 1.0), row(0.2, 0.0)]
    c = at_threshold(rows, 0.5)
    assert (c.answered, c.correct, c.confidently_wrong, c.abstained, c.flagged_right, c.wrong) == (2, 1, 1, 2, 1, 2)
    assert c.coverage == 0.5 and c.accuracy == 0.5


def test_auroc_is_the_chance_a_right_answer_is_more_confident_than_a_wrong_one() -> None:
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5 and auroc([0.5], [True]) is None
    interval = auroc_interval([0.9, 0.8, 0.7, 0.3, 0.2, 0.6], [True, True, False, False, False, True])
    assert interval["low"] is not None and interval["low"] <= interval["auroc"] <= interval["high"]


def test_the_rule_flags_half_the_wrong_answers_with_as_few_right_ones_as_it_can() -> None:
    rows = [row(0.9, 1.0), row(0.85, 1.0), row(0.7, 0.0), row(0.6, 0.0), row(0.4, 0.0), row(0.3, 1.0)]
    t = choose(rows)
    c = at_threshold(rows, t)
    assert 2 * c.confidently_wrong <= c.wrong and t == 0.61, (t, c)
    assert choose(rows, min_answered=0.9) == 0.3, "kept answered: the highest threshold that keeps 90%"


def test_eval_rows_carry_confidence_and_the_report_its_table(loaded_model: FakeModel, index: Path, tmp_path: Path):
    data = tmp_path / "qa.jsonl"
    data.write_text(json.dumps({"question": "What is the capital of Colombia?", "answers": ["Bogotá"]}) + "\n")
    loaded_model.enqueue("Answer: Bogota [1]", probability=0.5)  # supported: 0.75; in the source's form
    out = tmp_path / "run"
    args = ["eval", str(data), "--mode", "search", "--out", str(out), "--model", "smollm2-135m"]
    result = CliRunner().invoke(
        app, [*args, "--search", "local", "--index", str(index), "--confidence-threshold", "0.7"]
    )
    assert result.exit_code == 0, result.output
    (r,) = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert (r["prediction"], r["em"], r["confidence"], r["uncertain"]) == ("Bogotá", 1.0, 0.75, False), r
    (look,) = r["looks"]
    assert {k: look[k] for k in ("short_answer", "confidence", "token_probability", "supported", "em", "f1")} == {
        "short_answer": "Bogotá",
        "confidence": 0.75,
        "token_probability": 0.5,
        "supported": True,
        "em": 1.0,
        "f1": 1.0,
    }
    assert (look["answer_in_context"], look["citation_right"], look["cited"]) == (True, True, [1]), look
    assert look["prompt_tokens"] == r["prompt_tokens"] > 0 and 0 < look["seconds"] <= r["seconds"], "one look: all"
    assert "context" not in look, "the texts a look was shown are scored, not kept twice"
    assert json.loads((out / "run.json").read_text())["confidence_threshold"] == 0.7
    assert "Confidence, search" in (out / "report.md").read_text()


def test_the_script_prints_the_tables_and_writes_the_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    rows = [row(0.9, 1.0), row(0.8, 0.0, 0.95, 1.0), row(0.3, 1.0), row(0.2, 0.0)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "run.json").write_text(json.dumps({"confidence_threshold": 1.0, "model": "m", "dataset": "d"}))
    main([str(tmp_path), "--choose"])
    printed = capsys.readouterr().out
    assert "chosen threshold" in printed and "| threshold | coverage |" in printed and "AUROC" in printed
    assert (tmp_path / "confidence.png").stat().st_size > 1000


def test_a_run_at_one_replays_a_run_at_a_lower_threshold_exactly(loaded_model: FakeModel, index: Path, tmp_path: Path):
    """One run at threshold 1.0 gives the run at 0.7: the same answers and scores, and its cost without the second
    looks it would not have taken."""
    data = tmp_path / "qa.jsonl"
    questions = ["What is the capital of Colombia?", "Which city is the capital of Colombia?"]
    data.write_text("".join(json.dumps({"question": q, "answers": ["Bogotá"]}) + "\n" for q in questions))

    def run(threshold: str, out: Path) -> list[dict[str, Any]]:
        # Question 1: supported but unsure (0.75), then a wrong second answer; question 2: unsupported (0.4), then
        # the right one (0.95). At 0.7 only question 2 takes its second look; at 1.0 both do.
        replies = [("Answer: Bogota [1]", 0.5), ("Answer: Medellín", 0.9)] if threshold == "1.0" else []
        replies = replies or [("Answer: Bogota [1]", 0.5)]
        for text, p in [*replies, ("Answer: Lima", 0.8), ("Answer: Bogotá [4]", 0.9)]:
            loaded_model.enqueue(text, probability=p)
        args = ["eval", str(data), "--mode", "rag", "--out", str(out), "--model", "smollm2-135m", "--search", "local"]
        args += ["--second-look"]  # SmolLM2's preset takes none
        result = CliRunner().invoke(app, [*args, "--index", str(index), "--confidence-threshold", threshold])
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]

    direct = run("0.7", tmp_path / "at-0.7")
    full = run("1.0", tmp_path / "at-1")
    assert [len(r["looks"]) for r in full] == [2, 2] and [len(r["looks"]) for r in direct] == [1, 2]
    write_replay(tmp_path / "at-1", 0.7, tmp_path / "replayed")
    replayed = [json.loads(line) for line in (tmp_path / "replayed" / "results.jsonl").read_text().splitlines()]
    for got, want in zip(replayed, direct, strict=True):
        kept = ("prediction", "em", "f1", "answer_in_context", "citation_right", "confidence", "uncertain", "shown_ids")
        for key in kept:
            assert got[key] == want[key], (key, got, want)
        assert got["prompt_tokens"] == want["prompt_tokens"] and got["completion_tokens"] == want["completion_tokens"]
        assert [look["short_answer"] for look in got["looks"]] == [look["short_answer"] for look in want["looks"]]
    assert replayed[0]["seconds"] < full[0]["seconds"], "the second look not taken is not paid for"
    assert replayed[0]["context"] is None and full[0]["context"], "the passages of a look not taken are not kept"
    assert json.loads((tmp_path / "replayed" / "run.json").read_text())["replayed_from"]["threshold"] == 1.0
    report = (tmp_path / "replayed" / "report.md").read_text()
    assert "| rag | 2 |" in report and "Replayed at confidence threshold 0.7" in report
    write_replay(tmp_path / "at-1", 0.7, tmp_path / "one-look", second_look=False)
    one = [json.loads(line) for line in (tmp_path / "one-look" / "results.jsonl").read_text().splitlines()]
    assert [len(r["looks"]) for r in one] == [1, 1] and one[1]["prediction"] == "Lima" and one[1]["uncertain"]
    assert one[1]["prompt_tokens"] < replayed[1]["prompt_tokens"], "no second look paid for"
    assert "without the second look" in (tmp_path / "one-look" / "report.md").read_text()
    with pytest.raises(ValueError, match="up to it"):
        write_replay(tmp_path / "at-0.7", 0.9, tmp_path / "nope")
    ran = json.loads((tmp_path / "at-0.7" / "run.json").read_text())
    (tmp_path / "at-0.7" / "run.json").write_text(json.dumps({**ran, "second_look": False}))
    write_replay(tmp_path / "at-0.7", 0.7, tmp_path / "none-taken")
    assert json.loads((tmp_path / "none-taken" / "run.json").read_text())["second_look"] is False
