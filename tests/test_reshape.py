"""evals/reshape.py: a run's replies shaped again by this checkout and scored beside the rows' own predictions.

The rows are made up in the shape `assistant eval` writes; the questions are XQuAD's (deepmind/xquad, CC BY-SA 4.0)
and the passage sentences shortened from its paragraphs.
"""

from __future__ import annotations

import json
from pathlib import Path

from assistant.evals.reshape import main, reshaped


def row(question: str, answer: str, prediction: str, gold: list[str], em: float, context: list[str], lang: str):
    return {
        "id": question[:8],
        "mode": "rag",
        "question": question,
        "answer": answer,
        "prediction": prediction,
        "gold": gold,
        "em": em,
        "context": [{"n": i + 1, "id": f"p{i}", "text": text} for i, text in enumerate(context)],
        "route": {"language": lang},
        "error": None,
    }


MANNING = row(
    "¿Cuántos años tenía Peyton Manning cuando jugó la Super Bowl 50?",
    "39 años [1]",
    "39 años",
    ["39"],
    0.0,
    ["Super_Bowl_50: Peyton Manning, con 39 años, se convirtió en el mariscal de campo más longevo."],
    "es",
)
DAVIS = row(
    "How many forced fumbles did Thomas Davis have?",
    "4 [1]",
    "4",
    ["four"],
    0.0,
    ["Davis compiled 5½ sacks, four forced fumbles, and four interceptions.", "With 4:51 left, Carolina got the ball."],
    "en",
)
STEELERS = row(
    "Who did the Broncos beat in the divisional round?",
    "Pittsburgh Steelers [1]",
    "Pittsburgh Steelers",
    ["Pittsburgh Steelers"],
    1.0,
    ["The Broncos defeated the Pittsburgh Steelers in the divisional round."],
    "en",
)


def test_a_reply_is_shaped_as_the_loop_shapes_it():
    assert reshaped(MANNING) == "39"  # the unit the question counts in goes
    assert reshaped(DAVIS) == "four"  # the sentence that answers writes the word
    assert reshaped(STEELERS) == "Pittsburgh Steelers"


def test_changed_rows_and_the_em_each_way_are_reported(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    lines = [json.dumps(r, ensure_ascii=False) for r in (MANNING, DAVIS, STEELERS)]
    (run / "results.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = main([run / "results.jsonl"])
    assert "+ ¿Cuántos años tenía Peyton Manning" in out and "'39 años' → '39'" in out
    assert "'4' → 'four'" in out and "Pittsburgh Steelers |" not in out.split("\n\n")[0]
    assert "| run | 3 | 2 | 33.3 | 100.0 | 2 | 0 |" in out
