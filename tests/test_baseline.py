"""The plain baseline (`assistant eval --mode plain`): the exact prompt it sends, what it keeps of the reply,
and its rows, with a scripted model and a real local index."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.baseline import first_line
from assistant.events import Answer
from assistant.runner import Assistant
from assistant.search.local import LocalIndex
from assistant.settings import load_settings

QUESTION = "Which river joins the Ouse at Trent Falls?"  # five hits in tests/data: three are shown
SYSTEM = (
    "You answer trivia questions using the provided search results. Reply with only the short answer (a few words), "
    "no explanation, no full sentence."
)


def test_plain_sends_the_baseline_prompt_with_the_top_three_passages(fake_model, index: Path):
    assistant = Assistant.from_settings(load_settings(search="local", index=index, lang="en"), model=fake_model)
    fake_model.enqueue("Answer: River Trent.\nThe Trent joins the Ouse at Trent Falls [1].")
    events = list(assistant.baseline(QUESTION))
    ((messages, options),) = fake_model.history
    top = LocalIndex(index).search(QUESTION, max_results=3)
    results = "\n\n".join(f"[{i}] {r.title}: {r.text}" for i, r in enumerate(top, 1))
    assert [m.role for m in messages] == ["system", "user"]
    assert messages[0].content == SYSTEM
    assert messages[1].content == (
        f"Search results:\n{results}\n\nQuestion: {QUESTION}\nReply with only the short answer (a few words)."
    )
    assert (options.max_tokens, options.temperature, options.tools) == (48, 0.0, [])
    final = events[-1]
    assert isinstance(final, Answer)
    assert (final.short_answer, final.answer, final.sources, final.shown) == (
        "River Trent",
        "River Trent",
        [],
        [1, 2, 3],
    )
    assert len(LocalIndex(index).search(QUESTION, max_results=5)) == 5, "the search found more than the three shown"


@pytest.mark.parametrize(
    ("reply", "kept"),
    [
        ("\n\n  Answer: St. Petersburg.\nBecause…", "St. Petersburg"),
        ("Henry J. Kaiser", "Henry J. Kaiser"),
        ("answer:Bogotá...", "Bogotá"),
        ("", ""),
    ],
)
def test_the_first_non_empty_line_is_kept_without_answer_and_trailing_periods(reply: str, kept: str):
    assert first_line(reply) == kept


def test_eval_plain_mode_scores_the_baseline_beside_rag_and_reports_the_pairing(fake_model, index: Path, tmp_path):
    from assistant.batch import PerThread
    from assistant.evals.datasets import load_dataset
    from assistant.evals.report import summarize
    from assistant.evaluate import EvalRun, modes_for

    dataset = tmp_path / "q.jsonl"
    dataset.write_text(f'{{"id": "trent", "question": "{QUESTION}", "answers": ["Trent", "River Trent"]}}\n')
    assistant = Assistant.from_settings(load_settings(search="local", index=index, lang="en"), model=fake_model)
    fake_model.enqueue("River Trent.", "Answer: the Humber [1]")  # plain first: modes run one after the other
    modes = modes_for("plain,rag")
    rows = EvalRun(load_dataset(dataset), modes, tmp_path / "run", PerThread(lambda: assistant, [assistant])).run()
    by_mode = {r["mode"]: r for r in rows}
    assert modes == ["plain", "rag"] and by_mode["plain"]["em"] == 1.0 and by_mode["rag"]["em"] == 0.0
    assert by_mode["plain"]["answer_in_context"] is True and by_mode["plain"]["sources"] == []
    assert fake_model.history[0][0][0].content == SYSTEM, "the plain row was answered by the baseline's prompt"
    assert summarize(rows, modes, {})["uplift"]["rag_vs_plain"]["em"]["mean"] == -100.0


def test_the_reading_ablation_s_variants_send_what_plain_and_rag_send(fake_model, index: Path):
    # evals/reading.py measures rag's answering step by its variant "search-cite": it must be rag's own prompt
    from assistant.evals.reading import retrieve, variants, with_tail
    from assistant.prompting import load_prompt

    settings = load_settings(search="local", index=index, lang="en", second_look=False)
    assistant = Assistant.from_settings(settings, model=fake_model)
    fake_model.enqueue("Trent [1]", "Trent")
    list(assistant.ask(QUESTION, multi=False))
    list(assistant.baseline(QUESTION))
    (rag, _), (plain, _) = fake_model.history
    top3, shown, _ = retrieve(assistant, QUESTION)
    sent = variants(QUESTION, top3, shown)
    assert sent["search-cite"] == rag and sent["plain"] == plain
    assert sent["search-short"] == with_tail(rag, load_prompt("answer_short"))
