"""Evidence selection: sentences scored against the question, excerpts within a per-source budget, more sources
shown in the same tokens, citations still naming whole sources; and the eval row's `context`, what the prompt
showed, from which answer in context can be recomputed."""

from __future__ import annotations

import json
from pathlib import Path

from assistant.evals.scoring import answer_in_context
from assistant.evaluate import run_config
from assistant.evidence import excerpts, pick, sentence_scores
from assistant.passages import split_sentences
from assistant.prompting import render_sources
from assistant.search.base import SearchResult
from assistant.state import RunState
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy
from tests.test_eval import COLOMBIA, eval_run, two_questions  # noqa: F401 (a fixture)
from tests.test_loop import ListSearch

NIGHT_WATCH = (
    "The Night Watch is one of the best-known paintings of the Dutch Golden Age. "
    "It was painted by Rembrandt van Rijn in 1642, at the height of his career. "
    "The canvas was cut down in 1715 to fit between two columns of the Amsterdam town hall. "
    "Today it hangs in the Rijksmuseum, in a hall built for it."
)


def count(text: str) -> int:
    return len(text.split())


def test_sentences_are_split_and_an_abbreviation_leaves_no_fragment():
    assert split_sentences("It was built in 1889. It is 330 m tall.\n\nA new paragraph starts here.") == [
        "It was built in 1889.",
        "It is 330 m tall.",
        "A new paragraph starts here.",
    ]
    assert split_sentences("He met Dr. Who in the hall. Then he left the building.") == [
        "He met Dr. Who in the hall.",
        "Then he left the building.",
    ]


def test_the_sentence_sharing_the_questions_words_is_kept_and_the_gap_is_marked():
    question = "In which hall of the Amsterdam town was the canvas cut down?"
    [excerpt] = excerpts(question, [NIGHT_WATCH], per_source=20, count=count)
    assert "cut down in 1715" in excerpt and "Golden Age" not in excerpt, excerpt
    assert count(excerpt) <= 20
    [two] = excerpts("Who painted it, and when was the canvas cut down?", [NIGHT_WATCH], per_source=34, count=count)
    assert "Rembrandt" in two and "1715" in two and "Golden Age" not in two, two
    [apart] = excerpts("painted Rembrandt; where does it hang today?", [NIGHT_WATCH], per_source=30, count=count)
    assert "Rembrandt" in apart and "Rijksmuseum" in apart and " … " in apart and "1715" not in apart, apart


def test_a_source_sharing_no_word_keeps_its_opening_and_one_that_fits_stays_whole():
    [lead] = excerpts("Which volcano erupted in 79 AD?", [NIGHT_WATCH], per_source=16, count=count)
    assert lead == "The Night Watch is one of the best-known paintings of the Dutch Golden Age."
    short = "Bogotá is the capital of Colombia."
    assert excerpts("capital of Colombia", [short], per_source=50, count=count) == [short]


def test_a_word_every_sentence_shares_weighs_less_than_a_rare_one():
    sentences = [["Rembrandt painted it.", "Rembrandt moved in 1639."], ["Rembrandt died in Amsterdam in 1669."]]
    scores = sentence_scores("When did Rembrandt die in Amsterdam?", sentences)
    assert scores[1][0] > scores[0][0] > 0
    assert pick([0.0, 3.0, 0.0, 1.0], [5, 5, 5, 5], budget=12) == [1, 3]
    assert pick([0.0, 3.0, 0.0, 0.0], [5, 5, 5, 5], budget=12) == [0, 1], "a tie goes to the nearer sentence"


def _state(passages: list[tuple[str, str]], question: str) -> RunState:
    hits = [SearchResult(f"p{i}", title, text=text) for i, (title, text) in enumerate(passages)]
    ctx = ToolContext(question, ListSearch(table={question: hits}), FetchPolicy(), count, max_results=10)
    state = RunState(question, "fake", "list", ctx)
    for _ in state.call(1, default_tools()["web_search"], {"query": question}, by="policy"):
        pass
    return state


def test_evidence_shows_more_sources_in_the_same_budget_and_keeps_them_whole_for_citations():
    def filler(page: int) -> str:
        return " ".join(f"Sentence {i} of page {page} talks about something unrelated to anything." for i in range(6))

    passages = [(f"Page {i}", filler(i)) for i in range(4)]
    passages.append(("Night Watch", f"{filler(4)} {NIGHT_WATCH}"))
    question = "Who painted The Night Watch?"
    state = _state(passages, question)
    whole = state.shown(budget=250, count=count, most=5)
    assert [s.id for s in whole] == ["p0", "p1", "p2"], "three whole passages fill the budget"
    cut = state.shown(budget=250, count=count, most=5, evidence=32)
    assert [s.id for s in cut] == ["p0", "p1", "p2", "p3", "p4"]
    assert count(render_sources(cut)) <= count(render_sources(whole))
    assert "Rembrandt" in cut[-1].text and len(cut[-1].text) < len(state.sources[4].text)
    assert state.sources[4].text.endswith(NIGHT_WATCH), "the source itself stays whole for citations"
    assert answer_in_context([s.text for s in cut], ["Rembrandt van Rijn"])


def test_an_eval_row_records_the_text_the_prompt_showed(fake_model, index: Path, two_questions: Path, tmp_path):  # noqa: F811
    fake_model.enqueue("Bogotá", "Humber", "Bogotá [1]", "Humber [2]")  # plain, then rag
    out = tmp_path / "run"
    run = eval_run(fake_model, index, two_questions, out, ["plain", "rag"])
    run.config = run_config(run.assistants.get(), two_questions)
    rows = run.run()
    plain = next(r for r in rows if r["id"] == COLOMBIA and r["mode"] == "plain")
    prompt = fake_model.history[0][0][-1].content
    assert len(plain["context"]) == 3 and all(f"[{c['n']}] {c['text']}" in prompt for c in plain["context"])
    row = next(r for r in rows if r["id"] == COLOMBIA and r["mode"] == "rag")
    prompt = fake_model.history[2][0][-1].content
    assert row["context"] and all(set(c) == {"n", "id", "text"} for c in row["context"])
    assert all(f"[{c['n']}] {c['text']}" in prompt for c in row["context"]), "the exact text after [n]"
    assert row["context"][0]["id"] == "triviaqa-1949" and row["context"][0]["text"].startswith("Bogotá: ")
    assert row["answer_in_context"] == answer_in_context([c["text"] for c in row["context"]], row["gold"])
    assert json.loads((out / "run.json").read_text())["row_format"] == 4
