"""Non-English answers, scored from an eval run's rows: EM/F1 with TriviaQA's official normalization (as the run
scored them) and, beside it, MLQA's per-language one; answer in context (a gold answer among the passages the
model read, every punctuation mark a space: `answer_in_passages`); the gold passage in context (the
question file's `gold_passage_id` among the passages the model read, the row's `shown_ids`); and whether each
answer is written in the question's language.

    python -m assistant.evals.multilingual runs/xquad-ru/results.jsonl --lang ru \
        --questions ../shared/data/xquad/ru.questions.jsonl        # one markdown row a mode

MLQA's normalization is `normalize_answer` of facebookresearch/MLQA, mlqa_evaluation_v1.py: lower-case, every
Unicode punctuation character (category P*) and ASCII punctuation removed, the articles of the answer's language
removed (en es de vi ar; Arabic's rule removes every "ال", as the script does), then white-space tokens, or for
Chinese each Han character a token ("mixed segmentation"). MLQA covers en es de vi ar zh hi; any other language
is scored as MLQA scores Hindi: no articles, white-space tokens.

The language check (`answer_language`) asks whether an answer is written in the question's language: "same"
when most of its letters are in the language's script (assistant/languages.py) and, for a language written in
Latin letters, py3langid restricted to it and English does not call it English; "neutral" when it has no
letters (a number, a date in digits) or is a name in another script (each word capitalized: "Denver Broncos"
for a Russian question); "other" otherwise. The share reported counts "same" and "neutral" as in the language.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import statistics
import string
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from assistant.analysis import identifier, stem_function
from assistant.evals.retrieval import gold_rank, records_of
from assistant.evals.scoring import normalize_answer
from assistant.jsonl import rows as read_rows
from assistant.languages import LANGUAGES, numbers_of
from assistant.passages import holds_phrase, space_cjk, tokenize

_MLQA_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "es": r"\b(un|una|unos|unas|el|la|los|las)\b",
    "vi": r"\b(của|là|cái|chiếc|những)\b",
    "de": r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b",
    "ar": r"\sال^|ال",
}
_HAN = re.compile(r"[\u4e00-\u9fa5]")


@functools.cache
def _punctuation() -> frozenset[str]:
    """MLQA's PUNCT: every character of a Unicode punctuation category, and ASCII punctuation (0.3 s, once)."""
    return frozenset(
        {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")}
        | set(string.punctuation)
    )


def _mixed_segmentation(text: str) -> list[str]:
    """MLQA's Chinese tokens: each Han character and punctuation mark alone, other runs split at white space."""
    out: list[str] = []
    pending = ""
    for char in text:
        if _HAN.match(char) or char in _punctuation():
            out += pending.split()
            pending = ""
            out.append(char)
        else:
            pending += char
    return out + pending.split()


def mlqa_normalize(s: str, lang: str) -> str:
    """MLQA's `normalize_answer(s, lang)`."""
    punct = _punctuation()
    text = "".join(ch for ch in s.lower() if ch not in punct)
    if lang in _MLQA_ARTICLES:
        text = re.sub(_MLQA_ARTICLES[lang], " ", text)
    tokens = _mixed_segmentation(text) if lang == "zh" else text.split()
    return " ".join(t for t in tokens if t.strip())


def mlqa_scores(prediction: str, golds: Sequence[str], lang: str) -> tuple[float, float]:
    """(EM, F1) of `prediction`, each the max over `golds`, with MLQA's normalization."""
    em = f1 = 0.0
    pred = mlqa_normalize(prediction, lang)
    for gold in golds:
        truth = mlqa_normalize(gold, lang)
        em = max(em, float(pred == truth))
        same = sum((Counter(pred.split()) & Counter(truth.split())).values())
        if same:
            p, r = same / len(pred.split()), same / len(truth.split())
            f1 = max(f1, 2 * p * r / (p + r))
    return em, f1


_SCRIPT_NAMES = {
    "LATIN": "Latin",
    "CYRILLIC": "Cyrillic",
    "GREEK": "Greek",
    "ARABIC": "Arabic",
    "DEVANAGARI": "Devanagari",
    "THAI": "Thai",
    "HANGUL": "Hangul",
    "CJK": "Han",
    "HIRAGANA": "Han",  # Japanese is checked as one script: kana with Han
    "KATAKANA": "Han",
}


def script_of(char: str) -> str:
    """The script of a letter, by its Unicode name ("Other" for one of none listed)."""
    name = unicodedata.name(char, "")
    return next((script for prefix, script in _SCRIPT_NAMES.items() if name.startswith(prefix)), "Other")


def _is_name(text: str) -> bool:
    words = re.findall(r"[^\W\d_]+", text)
    return bool(words) and all(w[0].isupper() for w in words)


def answer_language(answer: str, lang: str) -> Literal["same", "neutral", "other"]:
    """Whether `answer` is written in language `lang` (see the module's docstring)."""
    letters = [c for c in answer if c.isalpha()]
    if not letters:
        return "neutral"
    expected = LANGUAGES[lang].script if lang in LANGUAGES else "Latin"
    scripts = Counter(script_of(c) for c in letters)
    if scripts[expected] * 2 <= len(letters):
        return "neutral" if _is_name(answer) else "other"
    if expected != "Latin" or lang == "en" or _is_name(answer):
        return "same"
    detected, _ = _english_or(lang).classify(answer)
    return "other" if detected == "en" else "same"


@functools.cache
def _english_or(lang: str) -> Any:
    """py3langid choosing between English and `lang` only: a short answer is English or it is not."""
    ident = copy.copy(identifier())
    ident.set_languages(["en", lang])
    return ident


MISS_KINDS = (
    "right by MLQA",
    "not in context",
    "number form",
    "another inflection",
    "holds the gold",
    "inside the gold",
    "another answer",
)


def _number(text: str, lang: str) -> int | None:
    """The number from 2 to 10 that a normalized answer is, in digits or in words of `lang` (or English)."""
    if text.isdigit():
        return int(text)
    for forms in (numbers_of(lang), numbers_of("en")):
        found = [n for n, words in enumerate(forms, start=2) if text in words]
        if found:
            return found[0]
    return None


def _stems(text: str, stem: Callable[[str], str]) -> list[str]:
    """The words of a normalized answer by their stems, in the language's Snowball stemmer where the index stems it
    (assistant/languages.py; words as they are elsewhere): the same words in another case or number."""
    return [stem(t) for t in tokenize(text)]


def answer_in_passages(row: dict[str, Any]) -> bool | None:
    """Whether a gold answer occurs as a phrase in the passages the model read (the row's `context`), normalized as
    TriviaQA normalizes but with every Unicode punctuation mark a space, as ASCII's are: the run's own check keeps
    the Arabic comma and so misses "20–18" in "20–18،" (MLQA's normalization, which deletes punctuation, would
    miss "six" in "Six-time"). The run's verdict where the row has no context, None for a yes/no question."""
    if row.get("answer_in_context") is None or not row.get("context"):
        return row.get("answer_in_context")
    texts = [_spaced(c["text"]) for c in row["context"]]
    golds = [g for gold in row["gold"] if (g := _spaced(gold))]
    return any(_inside(g, text) for g in golds for text in texts)


def _spaced(text: str) -> str:
    punct = _punctuation()
    return normalize_answer("".join(" " if ch in punct else ch for ch in text))


def _inside(part: str, whole: str) -> bool:
    """Whether normalized `part` is in normalized `whole` as the support check finds a phrase: whole words, a Han or
    kana character a word, a Hangul word going on into its particle (assistant/passages.py `holds_phrase`)."""
    return holds_phrase(space_cjk(whole), space_cjk(part))


def miss_kind(row: dict[str, Any], lang: str) -> str | None:
    """What a row's wrong answer is (one of MISS_KINDS; the module's docstring), None for a right one."""
    if row["em"]:
        return None
    prediction, golds = row["prediction"], row["gold"]
    if mlqa_scores(prediction, golds, lang)[0]:
        return MISS_KINDS[0]
    if answer_in_passages(row) is False:
        return MISS_KINDS[1]
    pred = mlqa_normalize(prediction, lang)
    truths = [t for g in golds if (t := mlqa_normalize(g, lang))]
    number = _number(pred, lang)
    if number is not None and any(_number(t, lang) == number for t in truths):
        return MISS_KINDS[2]
    stem = stem_function(LANGUAGES[lang].stemmer if lang in LANGUAGES else None)
    if pred and any(t != pred and _stems(t, stem) == _stems(pred, stem) for t in truths):
        return MISS_KINDS[3]  # "Вторая мировая война" for the source's "Второй мировой войны"
    if pred and any(t != pred and _inside(t, pred) for t in truths):
        return MISS_KINDS[4]
    if pred and any(t != pred and _inside(pred, t) for t in truths):
        return MISS_KINDS[5]
    return MISS_KINDS[6]


def misses(path: Path, lang: str) -> str:
    """A markdown row a mode: the wrong answers of the run in `path`, counted by `miss_kind`."""
    rows = [r for r in _jsonl(path) if not r.get("error")]
    lines = ["| mode | n | wrong | " + " | ".join(MISS_KINDS) + " |", "|---" * (3 + len(MISS_KINDS)) + "|"]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        some = [r for r in rows if r["mode"] == mode]
        kinds = Counter(k for r in some if (k := miss_kind(r, lang)))
        counts = [str(kinds[k]) for k in MISS_KINDS]
        lines.append(f"| {mode} | {len(some)} | {sum(kinds.values())} | " + " | ".join(counts) + " |")
    return "\n".join(lines)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return read_rows(path)


def gold_in_context(row: dict[str, Any], gold_passage: str | None, doc_of: dict[str, str] | None = None) -> bool | None:
    """Whether the model read the question's gold passage (a passage `ID#k` of a split record counts as `ID`);
    None when the row or the question does not say. `doc_of`: the run's index as evals/retrieval.py's `records_of`
    reads it, so that a passage with the gold one's text counts too (TyDi QA repeats a paragraph under one id per
    question, and the loop shows the text once, under the first id found)."""
    if not gold_passage or row.get("shown_ids") is None:
        return None
    if doc_of is None:
        return any(pid.split("#")[0] == gold_passage for pid in row["shown_ids"])
    return gold_rank(row["shown_ids"], gold_passage, doc_of) is not None


def report(path: Path, lang: str, questions: Path | None = None, index: Path | None = None) -> str:
    """Markdown rows, one per mode of the run in `path` (an `assistant eval` results.jsonl); `questions`, the
    run's question file, gives each question's `gold_passage_id` for the gold-passage column, and `index`, the
    run's index, the passages that share the gold one's text."""
    rows = [r for r in _jsonl(path) if not r.get("error")]
    gold = {str(q.get("id")): q.get("gold_passage_id") for q in _jsonl(questions)} if questions else {}
    doc_of = records_of(index) if index else None
    lines = [
        "| mode | n | EM | F1 | EM (MLQA) | F1 (MLQA) | answer in context | gold passage in context "
        "| in the question's language |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in dict.fromkeys(r["mode"] for r in rows):
        some = [r for r in rows if r["mode"] == mode]
        mlqa = [mlqa_scores(r["prediction"], r["gold"], lang) for r in some]
        context = [c for r in some if (c := answer_in_passages(r)) is not None]
        same = [answer_language(r["prediction"], lang) != "other" for r in some]
        cells = [
            statistics.mean(r["em"] for r in some),
            statistics.mean(r["f1"] for r in some),
            statistics.mean(e for e, _ in mlqa),
            statistics.mean(f for _, f in mlqa),
        ]
        passages = [g for r in some if (g := gold_in_context(r, gold.get(str(r.get("id"))), doc_of)) is not None]
        shares = [f"{100 * statistics.mean(x):.1f}" if x else "—" for x in (context, passages)]
        lines.append(
            f"| {mode} | {len(some)} | "
            + " | ".join(f"{100 * c:.1f}" for c in cells)
            + f" | {' | '.join(shares)} | {100 * statistics.mean(same):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("results", type=Path, help="an `assistant eval` run's results.jsonl")
    parser.add_argument("--lang", required=True, help="the questions' language (en, de, ru, zh, ko, …)")
    parser.add_argument("--questions", type=Path, help="the run's questions, with gold_passage_id (XQuAD, TyDi QA)")
    parser.add_argument("--index", type=Path, help="the run's index: a passage of the gold one's text counts too")
    parser.add_argument("--misses", action="store_true", help="then the wrong answers, counted by what they are")
    args = parser.parse_args(argv)
    print(report(args.results, args.lang, args.questions, args.index))
    if args.misses:
        print("\n" + misses(args.results, args.lang))


if __name__ == "__main__":
    main()
