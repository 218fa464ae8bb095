"""Per-language routing: detection on real XQuAD questions, the routing table and its fallbacks, lazy loading of
route models under a memory budget, per-language prompts reaching the model, and the route in every output.

tests/data/xquad-questions.jsonl holds three XQuAD questions in each of its 12 languages (tests/data/README.md).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.batch import Question, answer_row
from assistant.cli import app
from assistant.errors import AssistantError
from assistant.evals.datasets import QAExample, QATask
from assistant.evaluate import EvalItem, eval_row
from assistant.events import Answer
from assistant.models import ModelSpec
from assistant.models.base import Completion, GenerationOptions, Message
from assistant.prompting import language_prompts, load_prompt, search_messages
from assistant.runner import Assistant
from assistant.search import FallbackSearch
from assistant.search.local import build_index
from assistant.settings import load_settings
from tests.conftest import FakeModel

DATA = Path(__file__).parent / "data"
XQUAD = [json.loads(line) for line in (DATA / "xquad-questions.jsonl").read_text(encoding="utf-8").splitlines()]
runner = CliRunner()


@pytest.fixture
def index(tmp_path: Path) -> Path:
    out = tmp_path / "index.db"
    build_index([DATA / "passages.jsonl"], out)
    return out


def make_assistant(fake: FakeModel, **settings: object) -> Assistant:
    return Assistant.from_settings(load_settings(**{"search": "none", **settings}), model=fake)


def final(events: object) -> Answer:
    answers = [e for e in events if isinstance(e, Answer)]  # type: ignore[attr-defined]
    assert len(answers) == 1
    return answers[0]


def test_real_xquad_questions_are_detected_and_routed_in_each_language(fake_model: FakeModel):
    assistant = make_assistant(fake_model)
    assert {r["lang"] for r in XQUAD} == {"ar", "de", "el", "en", "es", "hi", "ro", "ru", "th", "tr", "vi", "zh"}
    for record in XQUAD:
        detection = assistant.router.detect(record["question"])
        assert detection.lang == record["lang"], record
        route = assistant.router.route(detection)
        if detection.confidence >= assistant.router.settings.lang_threshold:
            assert route.language == record["lang"] and (route.fallback is None) == (record["lang"] == "en"), record
            assert route.region != "wt-wt" or record["lang"] == "en"
        else:  # below the threshold the default route is taken, and it says why
            assert route.language == "en" and "detection unsure" in (route.fallback or ""), (record, route)


def test_short_mixed_and_unrouted_questions_take_the_default_route_and_say_why(fake_model: FakeModel):
    assistant = make_assistant(fake_model)
    cases = {
        "?!": "no letters",
        "Paris?": "detection unsure",
        "Who wrote Les Misérables?": "detection unsure",  # English, with a French title
        "Kuka kirjoitti Kalevalan?": "detection unsure",  # Finnish: no route, so no confident language
    }
    for question, why in cases.items():
        route = assistant.router.route(assistant.router.detect(question))
        assert route.language == "en" and why in (route.fallback or ""), (question, route)
    route = assistant.router.route(assistant.router.detect("", lang="fi"))
    assert route.language == "en" and route.fallback == "no route for fi: default route"


def test_lang_overrides_detection_and_bad_codes_fail_clearly(fake_model: FakeModel):
    assistant = make_assistant(fake_model, lang="de")
    english = "How many points did the Panthers defense surrender?"
    assert assistant.router.route(assistant.router.detect(english)).language == "de"
    router = assistant.router
    assert router.route(router.detect(english, lang="auto")).language == "en"  # a call's own auto detects
    assert assistant.router.route(make_assistant(fake_model).router.detect(english, lang="ES")).language == "es"
    fake_model.enqueue("308")
    answer = final(make_assistant(fake_model).ask(english, lang="ru"))
    assert answer.lang == "ru" and answer.lang_confidence == 1.0 and answer.route["language"] == "ru"
    with pytest.raises(AssistantError, match="language code"):
        make_assistant(fake_model).router.detect(english, lang="german!")


def test_the_route_s_prompts_reach_the_model_and_english_ones_stay_byte_identical(fake_model: FakeModel, index: Path):
    # one prompt each; German asks with prompts/de.md, as config.toml's `[routes.de] prompts = "de"` says
    assistant = make_assistant(
        fake_model, search="local", index=index, second_look=False, routes={"de": {"prompts": "de"}}
    )
    german = next(r["question"] for r in XQUAD if r["lang"] == "de")
    english = next(r["question"] for r in XQUAD if r["lang"] == "en")
    fake_model.enqueue("308 [1]", "308 [1]")
    final(assistant.ask(german, multi=False))
    final(assistant.ask(english, multi=False))
    (de_messages, _), (en_messages, _) = fake_model.history
    assert de_messages[0].content == language_prompts("de")["search"]
    assert de_messages[1].content.endswith(
        language_prompts("de")["answer_example"] + "\nAntworte auf Deutsch, mit den Worten der Quellen."
    )
    assert en_messages[0].content == load_prompt("search")
    assert en_messages[1].content.endswith("\nQuestion: " + english + "\n" + load_prompt("answer_example"))
    assert search_messages("q", [], [])[0].content == load_prompt("search")  # nothing of the German route leaked


@pytest.mark.parametrize("routes", [{}, {"es": {"prompts": "en"}}])
def test_english_prompts_with_an_answer_language_add_one_line(fake_model: FakeModel, routes):
    # the built-in routes ask in English even where prompts/<lang>.md exists (measured: docs/results.md)
    assert language_prompts("es")
    assistant = make_assistant(fake_model, routes=routes)
    fake_model.enqueue("ok")
    answer = final(assistant.ask(next(r["question"] for r in XQUAD if r["lang"] == "es")))
    system, user = fake_model.history[0][0]
    assert system.content == load_prompt("closed") + "\nAnswer in Spanish, in the words of the sources."
    assert answer.route["prompt"] == "prompts/*.md" and answer.route["answer_language"] == "es"


def test_a_route_whose_prompts_are_missing_uses_the_english_ones_and_says_so(fake_model: FakeModel):
    assistant = make_assistant(fake_model, routes={"pl": {"prompts": "pl"}})
    route = assistant.router.route(assistant.router.detect("", lang="pl"))
    assert route.prompts.lang == "en" and route.answer == "pl" and route.region == "pl-pl"
    assert route.fallback and route.fallback.endswith("no prompts/pl.md: the English prompts")


def test_a_route_whose_model_is_missing_falls_back_to_the_default_model_and_records_it(fake_model: FakeModel):
    assistant = make_assistant(fake_model, routes={"de": {"model": "/nowhere/german.gguf"}}, multilingual_model="none")
    fake_model.enqueue("308")
    answer = final(assistant.ask(next(r["question"] for r in XQUAD if r["lang"] == "de")))
    fallback = answer.route["fallback"]
    assert "model /nowhere/german.gguf for de is unavailable (model file not found" in fallback
    assert fallback.endswith("the default model fake answers") and answer.route["model"] == "fake"
    assert any(note.startswith("route de: model /nowhere/german.gguf") for note in answer.notes)
    assert answer.to_dict()["route"]["region"] == "de-de"


def test_route_models_load_on_first_use_and_the_least_recent_is_released(fake_model: FakeModel, tmp_path: Path):
    sizes = {"de": 300, "es": 250, "ru": 200}
    for code, mb in sizes.items():
        with open(tmp_path / f"{code}.gguf", "wb") as f:
            f.truncate(mb * 2**20)  # sparse: only its size matters
    routes = {code: {"model": str(tmp_path / f"{code}.gguf")} for code in sizes}
    assistant = make_assistant(fake_model, routes=routes, route_memory_mb=600)
    loads: list[str] = []

    def loader(settings: object, spec: ModelSpec) -> FakeModel:
        loads.append(Path(spec.target).stem)
        return FakeModel(name=Path(spec.target).stem).enqueue(*["ok"] * 5)

    assistant.router.loader = loader
    question = {r["lang"]: r["question"] for r in XQUAD}
    fake_model.enqueue("308")
    final(assistant.ask(question["en"]))
    assert loads == [] and not assistant.router.pool.loaded  # English: no route model is loaded
    assert final(assistant.ask(question["de"])).model == "de" and loads == ["de"]
    final(assistant.ask(question["es"]))
    answer = final(assistant.ask(question["de"]))  # de is in memory: not loaded again
    assert loads == ["de", "es"] and answer.timings["load"] == 0
    answer = final(assistant.ask(question["ru"]))  # 300 + 250 + 200 > 600: es, least recently used, goes
    assert loads == ["de", "es", "ru"] and [k[1] for k in assistant.router.pool.loaded] == [
        routes["de"]["model"],
        routes["ru"]["model"],
    ]
    released = [n for n in answer.notes if n.startswith("released")]  # the others: the answer's confidence
    assert released == ["released es (250 MB) to stay within route_memory_mb=600"], answer.notes


def test_batch_and_eval_rows_record_the_route(fake_model: FakeModel):
    assistant = make_assistant(fake_model)
    record = next(r for r in XQUAD if r["lang"] == "es")
    fake_model.enqueue(record["answers"][0], record["answers"][0])
    row = answer_row(assistant, Question("q1", record["question"], 1))
    assert row["lang"] == "es" and row["lang_confidence"] > 0.9 and row["route"]["language"] == "es"
    task = QATask("xquad", [QAExample(record["id"], record["question"], record["answers"])])
    row = eval_row(assistant, task, EvalItem(task.examples[0], "closed"))
    assert row["em"] == 1.0 and row["route"]["prompt"] == "prompts/*.md" and row["lang"] == "es"


def test_every_language_prompt_file_has_every_section():
    folder = Path(__file__).parent.parent / "prompts"
    for path in folder.glob("??.md"):
        sections = language_prompts(path.stem)
        answering = {"answer_example", "answer_format", "answer_short"}
        assert set(sections) == {"search", *answering, "closed", "next_step", "answer_in"}, path
        assert "[2]" in sections["answer_example"], path


@pytest.mark.slow
def test_ask_json_records_the_route_with_the_bundled_model():
    question = next(r["question"] for r in XQUAD if r["lang"] == "de")
    args = ["ask", question, "--json", "--model", "smollm2-135m", "--search", "none"]
    result = runner.invoke(app, args)
    assert result.exit_code == 3, result.output  # closed-book: answered, but not from sources
    data = json.loads(result.stdout)
    assert data["lang"] == "de" and data["lang_confidence"] > 0.9
    route = data["route"]
    assert route["language"] == "de" and route["prompt"] == "prompts/*.md" and route["region"] == "de-de"
    assert route["model"] == "smollm2-135m" and "the default model smollm2-135m answers" in route["fallback"]
    result = runner.invoke(app, [*args, "--lang", "en"])
    assert result.exit_code == 3, result.output
    data = json.loads(result.stdout)
    assert data["lang"] == "en" and data["route"]["language"] == "en" and data["route"]["fallback"] is None


@dataclass
class MeetingModel(FakeModel):
    """Answers "ok" once both threads are inside a generation, recording each thread's system prompt."""

    barrier: threading.Barrier = field(default_factory=lambda: threading.Barrier(2, timeout=10))
    seen: dict[str, str] = field(default_factory=dict)

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        self.barrier.wait()  # both questions are being answered at once
        self.seen[threading.current_thread().name] = messages[0].content
        yield "ok"
        yield Completion("ok")


def test_two_routes_answered_at_once_in_two_threads_each_get_their_own_prompts():
    model = MeetingModel()
    assistant = make_assistant(model, routes={"de": {"prompts": "de"}, "es": {"prompts": "es"}})
    questions = {lang: next(r["question"] for r in XQUAD if r["lang"] == lang) for lang in ("de", "es")}
    answers: dict[str, Answer] = {}

    def ask(lang: str) -> None:
        answers[lang] = final(assistant.ask(questions[lang], lang=lang))

    threads = [threading.Thread(target=ask, args=(lang,), name=lang) for lang in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    for lang in questions:
        prompts = language_prompts(lang)
        assert model.seen[lang] == prompts["closed"] + "\n" + prompts["answer_in"], lang
        assert answers[lang].route["prompt"] == f"prompts/{lang}.md"


def test_routes_under_the_openai_backend_ask_the_server_for_its_own_model_not_a_preset(fake_model: FakeModel):
    assistant = make_assistant(fake_model, backend="openai", base_url="http://127.0.0.1:9/v1")
    route = assistant.router.route(assistant.router.detect("", lang="de"))
    assert route.spec is None and route.model == "fake", route
    assert "with --backend openai" in (route.fallback or "")
    named = make_assistant(
        fake_model, backend="openai", base_url="http://127.0.0.1:9/v1", routes={"de": {"model": "g"}}
    )
    route = named.router.route(named.router.detect("", lang="de"))
    assert route.spec is not None and route.spec.target == "g", "a model the config names is asked for by name"


def test_an_assistant_replaced_in_a_chat_releases_its_index_connection(fake_model: FakeModel, index: Path, tmp_path):
    import io

    from rich.console import Console

    from assistant.chat import Chat
    from assistant.history import ChatStore

    assistant = make_assistant(fake_model, search="local", index=index)
    fake_model.enqueue("Rembrandt [1]")
    final(assistant.ask("Who painted The Night Watch?", lang="en", multi=False))
    chain = assistant.search
    assert isinstance(chain, FallbackSearch)
    local = chain.backends[0]
    assert local._con is not None, "the question opened the index"
    chat = Chat(assistant, Console(file=io.StringIO()), ChatStore(tmp_path / "chats.db"))
    chat.set_lang("de")
    assert chat.assistant is not assistant and chat.assistant.model is fake_model
    assert local._con is None, "the replaced assistant closed its index connection"
