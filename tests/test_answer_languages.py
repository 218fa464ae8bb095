"""Answers to non-English questions: trimmed with the question's language (its stop words, stems, copulas, or no
spaces at all), labelled replies in that language read, and the answer-language check and MLQA's normalization
of evals/multilingual.py.

The questions are XQuAD's and TyDi QA's (tests/data/xquad-questions.jsonl, tests/data/multilingual-questions.jsonl,
or ../shared/data); the model replies were written for these tests, in the shapes small models reply in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.evals.multilingual import (
    answer_in_passages,
    answer_language,
    miss_kind,
    misses,
    mlqa_normalize,
    mlqa_scores,
    report,
)
from assistant.evals.scoring import answer_in_context
from assistant.events import Answer, Source
from assistant.prompting import attribute, parse_answer, trim_restatement
from assistant.runner import Assistant
from assistant.settings import load_settings
from tests.conftest import FakeModel

DATA = Path(__file__).parent / "data"

TRIMMED = [
    # (language, question, reply's short answer, what is kept)
    ("ru", "Какой город является столицей Колумбии?", "Столицей Колумбии является Богота", "Богота"),
    ("ru", "Кто завладел утраченным мячом?", "Утраченным мячом завладел Уарду", "Уарду"),
    ("de", "Wie viele Punkte gab die Verteidigung der Panthers ab?", "Die Verteidigung gab 308 Punkte ab", "308"),
    ("es", "¿Cuántos puntos cedió la defensa de los Panthers?", "La defensa de los Panthers cedió 308 puntos", "308"),
    ("zh", "黑豹队的防守丢了多少分？", "黑豹队的防守丢了308分", "308分"),
    ("zh", "中国的首都是哪里？", "北京是中国的首都。", "北京"),
    ("ko", "세상에서 가장 오래된 언어는 무엇인가?", "세상에서 가장 오래된 언어는 수메르어입니다.", "수메르어"),
    ("ko", "구이도 3세의 후임 황제는 누구인가요?", "람베르토 2세입니다", "람베르토 2세"),
    # a number and the unit the question counts in: the number ("17" and "39" are XQuAD's answers)
    ("de", "Wie viele Sekunden Spielzeit verblieben, als die Broncos den Pass abfingen?", "17 Sekunden", "17"),
    ("es", "¿Cuántos años tenía Peyton Manning cuando jugó la Super Bowl 50?", "39 años", "39"),
    # the unit the question does not name stays (XQuAD's answer is "17 Sekunden"), and so does any other pair
    ("de", "Wie viel Zeit verblieb, als den Broncos die Interception gelang?", "17 Sekunden", "17 Sekunden"),
    ("de", "Wen schlugen die Broncos in der Divisional Round?", "Pittsburgh Steelers", "Pittsburgh Steelers"),
]


@pytest.mark.parametrize(("lang", "question", "short", "kept"), TRIMMED)
def test_a_restated_question_is_trimmed_in_its_own_language(lang, question, short, kept):
    assert trim_restatement(short, question, lang) == kept


def test_english_words_do_not_trim_other_languages_and_english_trims_as_before():
    # "die" is a German article and an English content word: each question's own list decides
    assert trim_restatement("Die Carolina Panthers", "Wer verlor das Spiel?", "de") == "Carolina Panthers"
    assert trim_restatement("Die Hard 2", "Which film was set at Dulles airport?") == "Die Hard 2"
    assert trim_restatement("The capital of Colombia is Bogotá", "What is the capital of Colombia?") == "Bogotá"
    assert trim_restatement("Six Grammys", "How many Grammys did Lady Gaga win?") == "Six"
    assert trim_restatement("Pittsburgh Steelers", "Which Steelers did Denver beat?") == "Pittsburgh Steelers"
    assert trim_restatement("7 Up", "Which soft drink is 7 Up?") == "7 Up"  # the number restates the question too
    # the whole answer restates the question: nothing is left to trim to, so it stays
    assert trim_restatement("超级碗50", "哪个队赢得了超级碗50?", "zh") == "超级碗50"


def test_a_labelled_reply_in_the_question_s_language_gives_its_answer():
    parsed = parse_answer("Ответ: Столицей Колумбии является Богота [1]", {1}, "Какая столица Колумбии?", "ru")
    assert parsed.short_answer == "Богота" and parsed.cited == [1]
    assert parse_answer("答案：北京 [2]", {2}, "中国的首都是哪里？", "zh").short_answer == "北京"


def test_a_korean_answer_is_found_in_a_source_whose_word_carries_a_particle():
    # TyDi QA korean-8384343899893667022-0, whose gold passage (tydi-korean-81) says "수메르어는 …"; the sentences
    # and titles here were written for the test, so that only the text can support the answer
    text = "수메르어는 현재까지 알려진 가장 오래된 문자 언어 중 하나이다."
    sources = [
        Source(1, "k1", "고대 언어", text=text),
        Source(2, "k2", "라틴어", text="라틴어는 고대 로마의 언어이다."),
    ]
    assert attribute("수메르어", "세상에서 가장 오래된 언어는 무엇인가?", sources) == [1]


def chinese_source() -> Source:
    """XQuAD's zh paragraph 0 (tests/data/multilingual-passages.jsonl)."""
    rows = [
        json.loads(line) for line in (DATA / "multilingual-passages.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    row = next(r for r in rows if r["id"] == "xquad-zh-0")
    return Source(1, row["id"], row["title"], text=row["text"])


def test_a_chinese_answer_is_found_in_its_source_character_by_character():
    # The question was written for the test from the paragraph's "防守端锋贾里德·艾伦，他是五次职业碗选手". Each
    # Han character is a token of its own: a name of single characters used to "say nothing" and never be found,
    # so no Chinese answer was supported (and none could be confident).
    question = "黑豹队的哪位防守端锋是五次职业碗选手？"
    source = chinese_source()
    assert attribute("贾里德·艾伦", question, [source]) == [1]
    assert attribute("卡万·肖特", question, [source]) == [1], "端 and 防 of the question are parts of other words"
    assert attribute("上海", question, [source]) == [], "two characters the source does not hold"
    assert attribute("防守", question, [source]) == [], "a restatement is in every source of the question"
    seoul = Source(2, "s", "首尔", text="韩国的首都是首尔。")  # written for the test
    assert attribute("首尔", "韩国的首都是哪里？", [seoul]) == [2], "首 of 首都 does not make 首尔 a restatement"


def test_answer_in_context_reads_chinese_without_spaces_and_korean_with_particles():
    text = chinese_source().text
    assert answer_in_context([text], ["贾里德·艾伦"]) and not answer_in_context([text], ["贾里德·布朗"])
    assert answer_in_context(["람베르토 2세가 황제가 되었다."], ["람베르토 2세"])
    assert not answer_in_context(["람베르토 2세가 황제가 되었다."], ["베르토 2세"]), "a Korean word starts at a space"
    assert answer_in_context(["The Humber estuary"], ["Humber"]) and not answer_in_context(["Parisian cafe"], ["Paris"])


def test_a_routed_question_s_answer_is_trimmed_by_its_route(fake_model: FakeModel):
    assistant = Assistant.from_settings(load_settings(search="none"), model=fake_model)
    fake_model.enqueue("Утраченным мячом завладел Уарду.")
    answers = [e for e in assistant.ask("Кто завладел утраченным мячом?") if isinstance(e, Answer)]
    assert answers[0].lang == "ru" and answers[0].short_answer == "Уарду"


@pytest.mark.parametrize(
    ("answer", "lang", "verdict"),
    [
        ("Богота", "ru", "same"),
        ("Denver Broncos", "ru", "neutral"),  # a name in another script
        ("308", "zh", "neutral"),  # no letters
        ("the best results", "ru", "other"),
        ("北京", "zh", "same"),
        ("Beijing city", "zh", "other"),
        ("수메르어", "ko", "same"),
        ("das Europäische Parlament", "de", "same"),
        ("the European Parliament", "de", "other"),  # Latin letters, but English
        ("mejores resultados", "es", "same"),
    ],
)
def test_the_answer_language_check(answer, lang, verdict):
    assert answer_language(answer, lang) == verdict


def test_mlqa_normalization_per_language():
    assert mlqa_normalize("El Parlamento Europeo.", "es") == "parlamento europeo"
    assert mlqa_normalize("黑豹队,308", "zh") == "黑 豹 队 308"  # a Han character a token; punctuation gone
    assert mlqa_normalize("«Богота»", "ru") == "богота"  # Unicode punctuation, which TriviaQA's keeps
    assert mlqa_scores("黑豹队", ["黑豹"], "zh") == (0.0, 0.8)


def test_the_report_scores_a_run_s_rows(tmp_path: Path):
    rows = [
        {"id": "q1", "mode": "rag", "prediction": "Богота", "gold": ["Богота"], "em": 1.0, "f1": 1.0,
         "answer_in_context": True, "shown_ids": ["p7", "p1#2"]},
        {"id": "q2", "mode": "rag", "prediction": "Bogota city", "gold": ["«Богота»"], "em": 0.0, "f1": 0.0,
         "shown_ids": ["p1#0"]},
        {"id": "q3", "mode": "rag", "error": "boom"},
    ]  # fmt: skip
    path, questions = tmp_path / "results.jsonl", tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    questions.write_text('{"id": "q1", "gold_passage_id": "p1"}\n{"id": "q2", "gold_passage_id": "p2"}\n')
    # q1 read its gold passage (p1#2, a piece of p1), q2 did not
    assert report(path, "ru", questions).splitlines()[-1] == (
        "| rag | 2 | 50.0 | 50.0 | 50.0 | 50.0 | 100.0 | 50.0 | 50.0 |"
    )
    assert report(path, "ru").splitlines()[-1].endswith("| 100.0 | — | 50.0 |")


@pytest.mark.parametrize(
    ("prediction", "gold", "lang", "kind"),
    [
        ("Broncos", "Broncos", "de", None),
        ("Pittsburgh Steelers", "die Pittsburgh Steelers", "de", "right by MLQA"),  # German's article
        ("6", "sechs", "de", "number form"),
        ("vier", "4", "de", "number form"),
        ("four", "4", "en", "number form"),
        ("5", "vier", "de", "another answer"),  # a number, but another one
        # the same words in another case (XQuAD ru: the source's genitive), and not in English, which is not stemmed
        ("Вторая мировая война", "Второй мировой войны", "ru", "another inflection"),
        ("Ньютон", "Ньютона", "ru", "another inflection"),
        ("Ньютон", "Уарду", "ru", "another answer"),
        ("Mannings", "Manning", "en", "another answer"),
        ("Mannings", "Manning", "de", "another inflection"),
        ("17 Sekunden", "17", "de", "holds the gold"),
        ("XXXIII", "Super Bowl XXXIII", "de", "inside the gold"),
        ("수메르어입니다", "수메르어", "ko", "holds the gold"),  # no spaces between a word and its particle
        ("XXXIV", "Super Bowl XXXIII", "de", "another answer"),
    ],
)
def test_a_wrong_answer_is_counted_by_what_it_is(prediction, gold, lang, kind):
    row = {"prediction": prediction, "gold": [gold], "em": float(prediction == gold), "answer_in_context": True}
    assert miss_kind(row, lang) == kind
    # unless it is right after all, an answer the model never read is first of all a retrieval miss
    unread = kind if kind in (None, "right by MLQA") else "not in context"
    assert miss_kind({**row, "answer_in_context": False}, lang) == unread


def test_the_misses_table_counts_each_mode_s_wrong_answers(tmp_path: Path):
    rows = [
        {"id": "q1", "mode": "rag", "prediction": "17 Sekunden", "gold": ["17"], "em": 0.0, "answer_in_context": True},
        {"id": "q2", "mode": "rag", "prediction": "17", "gold": ["17"], "em": 1.0, "answer_in_context": True},
        {"id": "q3", "mode": "rag", "prediction": "Paris", "gold": ["Rom"], "em": 0.0, "answer_in_context": False},
        {"id": "q4", "mode": "rag", "error": "boom"},
    ]  # fmt: skip
    path = tmp_path / "results.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert misses(path, "de").splitlines()[-1] == "| rag | 3 | 2 | 0 | 1 | 0 | 0 | 1 | 0 | 0 |"


def test_the_answer_is_found_in_context_whatever_punctuation_touches_it():
    # XQuAD ar and en (deepmind/xquad, CC BY-SA 4.0): an Arabic comma after the score, a hyphen after "Six"
    def row(gold: str, text: str) -> dict:
        return {"gold": [gold], "answer_in_context": False, "context": [{"n": 1, "text": text}]}

    assert answer_in_passages(row("20–18", "بطولة الاتحاد الأمريكي لكرة القدم، 20–18، من خلال اعتراض")) is True
    assert answer_in_passages(row("Six", "Six-time Grammy winner Lady Gaga performed the national anthem")) is True
    assert answer_in_passages(row("Paris", "a Parisian theatre")) is False
    assert (
        answer_in_passages({"gold": ["Paris"], "answer_in_context": True, "context": []}) is True
    )  # the run's verdict
    assert answer_in_passages({"gold": ["yes"], "answer_in_context": None}) is None  # yes/no: not counted
