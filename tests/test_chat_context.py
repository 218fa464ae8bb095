"""Multi-turn context in the loop: earlier turns in the prompt, the window budget, standalone follow-up queries,
and the SQLite chat store. The scripted fake model; real SQLite."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from assistant.errors import AssistantError
from assistant.events import Answer, Source
from assistant.history import ChatStore, ChatTurn, transcript
from assistant.loop import answer
from assistant.prompting import Turn, closed_messages, fit_history, search_messages, standalone_query
from assistant.search.base import SearchResult
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy

NIGHT_WATCH = SearchResult("nw", "The Night Watch", "", "", "The Night Watch is a 1642 painting by Rembrandt van Rijn.")
BORN = SearchResult("rb", "Rembrandt", "", "", "Rembrandt van Rijn was born on 15 July 1606 in Leiden.")
PAINTED = Turn("Who painted The Night Watch?", "Rembrandt van Rijn [1]")


@dataclass
class Search:
    """Answers every query with `results`, recording the queries."""

    name: str = "scripted"
    results: list[SearchResult] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        self.queries.append(query)
        return self.results[:max_results]


def ask(model, question, history, search=None, **kw):
    search = search or Search(results=[NIGHT_WATCH, BORN])
    ctx = ToolContext(standalone_query(question, history), search, FetchPolicy(), model.count_tokens)
    events = list(answer(question, model, ctx, default_tools(), multi=False, history=history, **kw))
    assert isinstance(events[-1], Answer)
    return events[-1], search


def test_without_history_the_messages_are_unchanged():
    sources = [Source(1, "nw", "The Night Watch", text="A painting by Rembrandt.")]
    assert search_messages("Q?", sources, ["n"], "answer_example", ()) == search_messages("Q?", sources, ["n"])
    assert closed_messages("Q?", []) == closed_messages("Q?")
    assert standalone_query("Who painted it?", []) == "Who painted it?"


def test_earlier_turns_go_between_the_system_prompt_and_the_question(fake_model):
    fake_model.enqueue("Answer: 1606 [2]")
    result, search = ask(fake_model, "and when was he born?", [PAINTED])
    messages = fake_model.history[0][0]
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert (messages[1].content, messages[2].content) == ("Who painted The Night Watch?", "Rembrandt van Rijn")
    assert "Question: and when was he born?" in messages[3].content and "<sources untrusted>" in messages[3].content
    assert search.queries == ["when was he born? Rembrandt van Rijn painted night watch"]
    assert result.question == "and when was he born?" and result.short_answer == "1606"


def test_a_standalone_question_is_searched_as_it_is(fake_model):
    fake_model.enqueue("Answer: Rembrandt [1]")
    _, search = ask(fake_model, "Who painted The Anatomy Lesson of Dr Nicolaes Tulp?", [PAINTED])
    assert search.queries == ["Who painted The Anatomy Lesson of Dr Nicolaes Tulp?"]


@pytest.mark.parametrize(
    ("question", "query"),
    [
        ("Where is it now?", "Where is it now? Rembrandt van Rijn painted night watch"),
        ("Why?", "Why? Rembrandt van Rijn painted night watch"),
        ("What about Vermeer?", "Vermeer? painted night watch"),  # names its own subject: no earlier answer
        ("Who is Vermeer?", "Who is Vermeer?"),
        ("What is the capital of Colombia?", "What is the capital of Colombia?"),
    ],
)
def test_follow_ups_borrow_the_previous_turns_terms(question, query):
    assert standalone_query(question, [PAINTED]) == query


def test_fit_history_drops_the_oldest_and_condenses_a_long_turn():
    words = lambda text: len(text.split())  # noqa: E731
    turns = [Turn(f"question {i}?", f"Answer {i} [1]") for i in range(10)]
    kept = fit_history(turns, 3 * (2 + 2 + 16), words)  # each turn: 2 + 2 words, 8 tokens a message
    assert [t.question for t in kept] == ["question 7?", "question 8?", "question 9?"]
    long = Turn("Who painted it?", "Rembrandt [1]\nExplanation: " + "word " * 500)
    kept = fit_history([turns[0], long], 60, words)
    assert kept == [Turn("question 0?", "Answer 0 [1]"), Turn("Who painted it?", "Rembrandt")]
    assert fit_history(turns, 0, words) == []


def test_history_never_overflows_the_window(fake_model):
    fake_model.context_length = 900
    history = [Turn(f"Question {i}: " + "filler " * 20, f"Answer {i} [1]") for i in range(40)]
    fake_model.enqueue("Answer: 1606 [2]")
    ask(fake_model, "and when was he born?", history, context_tokens=200, max_tokens=64)
    messages = fake_model.history[0][0]
    prompt = sum(fake_model.count_tokens(m.content) + 8 for m in messages)
    assert prompt + 64 <= 900, prompt
    asked = [m.content for m in messages if m.role == "user"][:-1]
    assert asked and asked[-1].startswith("Question 39:") and not any(q.startswith("Question 0:") for q in asked)


def test_closed_book_answers_see_the_history_too(fake_model):
    fake_model.enqueue("1606")
    events = list(answer("and when was he born?", fake_model, None, default_tools(), history=[PAINTED]))
    assert isinstance(events[-1], Answer)
    assert [m.role for m in fake_model.history[0][0]] == ["system", "user", "assistant", "user"]


def test_the_store_keeps_conversations_and_their_turns(tmp_path: Path):
    store = ChatStore(tmp_path / "chats.db")
    assert store.conversations() == []
    sources = [{"n": 1, "id": "nw", "title": "The Night Watch", "url": "https://example.org/nw", "snippet": "…"}]
    first = store.add(None, ChatTurn("Who painted The Night Watch?", "Rembrandt [1]", sources, "fake"))
    assert store.add(first, ChatTurn("and when was he born?", "1606", [], "fake")) == first
    second = store.add(None, ChatTurn("What is the capital of Colombia?", "Bogotá", [], "fake"))
    listed = store.conversations()
    assert [(c.id, c.turns, c.first_question) for c in listed] == [
        (first, 2, "Who painted The Night Watch?"),
        (second, 1, "What is the capital of Colombia?"),
    ]
    turns = store.turns(first)
    assert [t.question for t in turns] == ["Who painted The Night Watch?", "and when was he born?"]
    assert turns[0].sources == sources and turns[0].model == "fake" and turns[0].time
    text = transcript(turns, "Conversation 1")
    assert (
        "## Who painted The Night Watch?\n\nRembrandt [1]\n\nSources:\n- [1] The Night Watch <https://example.org/nw>"
        in text
    )
    with pytest.raises(AssistantError, match="no conversation 99"):
        store.turns(99)
    with sqlite3.connect(tmp_path / "chats.db") as db:
        assert db.execute("SELECT COUNT(*) FROM turns").fetchone() == (3,)


def test_an_unwritable_store_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AssistantError, match="cannot open the chat history"):
        ChatStore(blocker / "chats.db").add(None, ChatTurn("q", "a"))
