"""Answer scoring as TriviaQA's official evaluation does it, plus Self-RAG's `match` and a paired bootstrap.

`normalize_answer`, `exact_match` and `f1` reproduce the official scorer exactly: mandarjoshi90/triviaqa,
evaluation/triviaqa_evaluation.py (`normalize_answer`, `exact_match_score`, `f1_score`,
`metric_max_over_ground_truths`), which extends SQuAD v1.1's script. In order: underscores to spaces,
lower-case, ASCII punctuation and the quotes ‘ ’ ´ ` to spaces, drop the words a/an/the, fold white space.
Every score is the max over the gold aliases; for TriviaQA's own files the aliases are `NormalizedAliases` plus
any `HumanAnswers`, as its `get_ground_truths` takes them (see evals/triviaqa.py).

`match` is the metric Self-RAG reports for TriviaQA/PopQA (AkariAsai/self-rag, retrieval_lm/metrics.py:
a gold alias occurs in the whole generation). Self-RAG tests raw substrings; here both sides are normalized
first and an alias must occur as a whole phrase ("sunset boulevard" in "it was sunset boulevard", not "bog" in
"bogota"), which keeps case and punctuation from deciding the score.

    python -m assistant.evals.scoring "The Humber." "Humber Estuary" "The Humber"   # prints em, f1, match
"""

from __future__ import annotations

import re
import string
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from assistant.passages import holds_phrase, space_cjk

_EXCLUDE = set(string.punctuation + "".join(["‘", "’", "´", "`"]))  # the official set
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """TriviaQA's official normalization (lower-case, punctuation to spaces, no articles, folded spaces)."""
    s = s.replace("_", " ").lower()
    s = "".join(" " if ch in _EXCLUDE else ch for ch in s)
    return " ".join(_ARTICLES.sub(" ", s).split()).strip()


def exact_match(prediction: str, gold: str) -> bool:
    """Normalized prediction equals normalized gold."""
    return normalize_answer(prediction) == normalize_answer(gold)


def f1(prediction: str, gold: str) -> float:
    """Token F1 between normalized prediction and gold (0 when they share no token)."""
    pred, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def contains_phrase(text: str, gold: str) -> bool:
    """Whether normalized `gold` occurs in normalized `text` as whole words."""
    needle = normalize_answer(gold)
    return bool(needle) and f" {needle} " in f" {normalize_answer(text)} "


@dataclass
class Scores:
    """One prediction against its aliases: em and match are 0/1, f1 in [0, 1]."""

    em: float
    f1: float
    match: float


def score(short_answer: str, full_answer: str, aliases: Sequence[str]) -> Scores:
    """EM and F1 of the short answer (max over aliases); match over the full answer text."""
    if not aliases:
        raise ValueError("no gold answers to score against")
    return Scores(
        em=float(max(exact_match(short_answer, g) for g in aliases)),
        f1=max(f1(short_answer, g) for g in aliases),
        match=float(any(contains_phrase(full_answer, g) for g in aliases)),
    )


def answer_in_context(texts: Iterable[str], aliases: Sequence[str]) -> bool:
    """Whether any gold alias occurs (normalized, as a phrase) in any of the texts shown to the model. Kana and
    Han characters count as words of their own, since Chinese and Japanese put no spaces between words, and a
    Korean alias may go on into a particle (assistant/passages.py `holds_phrase`): "北京" is in "首都是北京",
    "수메르어" in "수메르어는"."""
    normalized = [space_cjk(normalize_answer(t)) for t in texts]
    needles = [n for n in (space_cjk(normalize_answer(a)) for a in aliases) if n]
    return any(holds_phrase(text, needle) for text in normalized for needle in needles)


def is_yes_no(aliases: Sequence[str]) -> bool:
    """Whether a question's gold answer is yes or no (HotpotQA's comparison questions): no passage holds it."""
    return bool(aliases) and all(normalize_answer(a) in ("yes", "no") for a in aliases)


@dataclass
class Interval:
    """A mean difference with its bootstrap 95% interval, in the units of the scores (0-1)."""

    mean: float
    low: float
    high: float
    n: int


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, samples: int = 2000, seed: int = 0) -> Interval:
    """Mean of b - a over paired questions, with a 95% percentile interval from resampling questions."""
    if len(a) != len(b):
        raise ValueError(f"paired scores differ in length: {len(a)} vs {len(b)}")
    if not a:
        return Interval(0.0, 0.0, 0.0, 0)
    import numpy as np

    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(diff.mean()), float(low), float(high), len(diff))


def _main(argv: list[str]) -> None:
    if len(argv) < 2:
        sys.exit("usage: python -m assistant.evals.scoring PREDICTION GOLD [GOLD...]")
    print(asdict(score(argv[0], argv[0], argv[1:])))


if __name__ == "__main__":  # pragma: no cover
    _main(sys.argv[1:])
