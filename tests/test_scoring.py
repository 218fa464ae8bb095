"""The scorer against hand-checked cases and TriviaQA's official sample record; the paired bootstrap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.evals.datasets import load_dataset
from assistant.evals.scoring import (
    answer_in_context,
    contains_phrase,
    exact_match,
    f1,
    is_yes_no,
    normalize_answer,
    paired_bootstrap,
    score,
)
from assistant.evals.triviaqa import TriviaQA, ground_truths

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "triviaqa-official-sample.json"


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Humber", "humber"),
        ("Sunset Blvd.", "sunset blvd"),
        ("  A  Tale of\tTwo Cities ", "tale of two cities"),
        ("an Anne-Marie", "anne marie"),  # articles only as whole words
        ("Theatre; the end", "theatre end"),
        ("New_York", "new york"),
        ("‘Le Douanier’", "le douanier"),  # the curly quotes the official set adds
        ("rock´n`roll", "rock n roll"),
        ("Bogotá, D.C.", "bogotá d c"),  # non-ASCII letters stay; only ASCII punctuation goes
        ("“Quoted”", "“quoted”"),  # double curly quotes are not in the official set
        ("AT&T's", "at t s"),
        ("", ""),
    ],
)
def test_normalize_answer_matches_hand_checked_cases(text: str, normalized: str):
    assert normalize_answer(text) == normalized


def test_every_alias_of_the_official_sample_normalizes_to_its_normalized_aliases():
    answer = json.loads(SAMPLE.read_text(encoding="utf-8"))["Data"][0]["Answer"]
    assert {normalize_answer(a) for a in answer["Aliases"]} == set(answer["NormalizedAliases"])
    assert normalize_answer(answer["Value"]) == answer["NormalizedValue"]


def test_the_official_sample_loads_with_its_ground_truths_and_scores():
    task = load_dataset(SAMPLE)
    assert isinstance(task, TriviaQA) and len(task) == 1 and not task.problems
    example = task[0]
    assert example.id == "tc_33" and example.question.startswith("Which Lloyd Webber musical")
    assert sorted(example.answers) == ["sunset blvd", "sunset boulevard", "sunset bulevard", "west sunset boulevard"]
    assert task.evaluate(example, "Sunset Blvd.").em == 1.0
    s = task.evaluate(example, "Sunset Boulevard, Hollywood", "It is Sunset Boulevard, Hollywood [1].")
    # tokens {sunset, boulevard, hollywood} vs {sunset, boulevard}: P 2/3, R 1, F1 0.8
    assert (s.em, round(s.f1, 4), s.match) == (0.0, 0.8, 1.0)
    assert task.evaluate(example, "Evita").f1 == 0.0


def test_human_answers_count_and_verified_eval_keeps_only_verified_questions():
    record = json.loads(SAMPLE.read_text(encoding="utf-8"))["Data"][0]
    unverified = {**record, "QuestionId": "x2", "QuestionPartOfVerifiedEval": False}
    record = {**record, "QuestionPartOfVerifiedEval": True}
    record["Answer"] = {**record["Answer"], "HumanAnswers": ["The Sunset Strip"]}
    assert "sunset strip" in ground_truths(record["Answer"])
    task = TriviaQA.from_json({"Data": [record, unverified], "VerifiedEval": True})
    assert [e.id for e in task.examples] == ["tc_33"]
    assert task.evaluate(task[0], "the Sunset Strip").em == 1.0


def test_unlabelled_records_are_listed_not_loaded():
    task = TriviaQA.from_json({"Data": [{"QuestionId": "t1", "Question": "Who?"}, {"Question": ""}]})
    assert len(task) == 0
    assert "t1" in task.problems[0] and "unlabelled" in task.problems[0]
    assert "no 'Question'" in task.problems[1]


@pytest.mark.parametrize(
    ("prediction", "gold", "em", "f1_score"),
    [
        ("Wilson Pickett", "Wilson pickett", True, 1.0),
        ("Wilson Picket", "Wilson Pickett", False, 0.5),  # 1 of 2 tokens each way
        ("the the humber", "Humber", True, 1.0),
        ("humber humber estuary", "Humber Estuary", False, 0.8),  # P 2/3, R 1
        ("", "Humber", False, 0.0),
        ("North Sea", "Humber", False, 0.0),
    ],
)
def test_exact_match_and_f1_by_hand(prediction: str, gold: str, em: bool, f1_score: float):
    assert exact_match(prediction, gold) is em
    assert round(f1(prediction, gold), 4) == f1_score


def test_scores_are_the_max_over_aliases_and_match_reads_the_whole_answer():
    aliases = ["Humber Estuary", "Humber", "The Humber"]
    s = score("River Humber", "They flow into the River Humber, an estuary [2].", aliases)
    assert s.em == 0.0 and round(s.f1, 4) == round(2 * 0.5 * 1 / 1.5, 4) and s.match == 1.0
    assert score("Humber.", "", aliases).em == 1.0
    with pytest.raises(ValueError, match="no gold"):
        score("x", "x", [])


def test_match_needs_a_whole_phrase():
    assert contains_phrase("It is Bogotá, the capital.", "Bogotá")
    assert not contains_phrase("Bogotano cuisine", "Bogotá")
    assert not contains_phrase("sunsets", "sunset")
    assert not contains_phrase("anything", "The")  # an alias that normalizes to nothing never matches
    assert answer_in_context(["Trent Falls: ... forms the Humber between ..."], ["Humber Estuary", "Humber"])
    assert not answer_in_context(["The North Sea"], ["Humber"])
    assert not answer_in_context([], ["Humber"])


def test_paired_bootstrap_is_centred_deterministic_and_paired():
    closed = [0, 0, 1, 0, 1, 0, 0, 1, 0, 0]
    search = [1, 0, 1, 1, 1, 0, 1, 1, 0, 1]
    first = paired_bootstrap(closed, search, seed=0)
    assert first == paired_bootstrap(closed, search, seed=0)
    assert first.mean == pytest.approx(0.4) and first.n == 10
    assert 0.0 < first.low < first.mean < first.high <= 0.8
    same = paired_bootstrap(search, search)
    assert (same.mean, same.low, same.high) == (0.0, 0.0, 0.0)
    # Paired: a constant per-question gain has no spread, however the questions vary among themselves.
    gain = paired_bootstrap([0.1, 0.5, 0.9], [0.3, 0.7, 1.1])
    assert gain.low == pytest.approx(0.2) and gain.high == pytest.approx(0.2)
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap([1], [1, 0])


def test_yes_no_answers_are_told_apart_from_answers_that_start_with_yes():
    assert is_yes_no(["yes"]) and is_yes_no(["No."]) and is_yes_no(["no", "No"])
    assert not is_yes_no(["Yes Minister"]) and not is_yes_no(["yes", "Norway"]) and not is_yes_no([])


def test_a_malformed_answer_or_a_repeated_id_is_listed_not_a_crash():
    good = {"QuestionId": "t1", "Question": "Who?", "Answer": {"Value": "Rembrandt", "Aliases": ["Rembrandt"]}}
    bad = {"QuestionId": "t2", "Question": "What?", "Answer": "just a string"}
    task = TriviaQA.from_json({"Data": [good, bad, good, "not a record"], "VerifiedEval": True})
    assert [e.id for e in task] == []  # VerifiedEval: none is marked part of it, and the string is no record
    task = TriviaQA.from_json({"Data": [good, bad, good, "not a record"]})
    assert [e.id for e in task] == ["t1"]
    assert "t2" in task.problems[0] and "duplicate id 't1'" in task.problems[1] and "no 'Question'" in task.problems[2]
