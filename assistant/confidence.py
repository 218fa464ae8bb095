"""How sure an answer is: one number in [0, 1] from the answer's own tokens and from the sources it was shown.

Two signals, both free at answering time:

- **token probability**: the geometric mean of the probabilities of the tokens that spell the short answer,
  as the model generated them (not its citation markers or formatting). On 1.5-3B models this predicts
  correctness far better than asking the model whether it is sure (TriviaQA AUROC about 0.76-0.79 against
  0.43-0.59; arXiv 2310.11689, 2302.09664).
- **support**: whether a shown source states the answer, accents, case and punctuation aside
  (`prompting.supported`, the check the loop already makes).

`confidence` is their mean, so a supported answer never scores below 0.5 and an unsupported one never above it;
where the backend gives no token probabilities (a server that does not send them) it is the support check alone,
0 or 1. An answer that says it found nothing ("unknown") has confidence 0. Below the threshold
(`Settings.confidence_threshold`, else the model preset's measured one) the loop takes a second look, and an
answer still below it is marked uncertain (assistant/loop.py).

    python -m assistant.evals.confidence DIR    # risk-coverage, AUROC and thresholds of an eval run's rows
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.models.base import TokenLogprob
from assistant.passages import tokenize

DEFAULT_THRESHOLD = 0.5  # a model without a measured one: uncertain when not supported (or supported, but unlikely)


def answer_probability(tokens: Sequence[TokenLogprob] | None, short_answer: str) -> float | None:
    """The geometric mean probability of the tokens that spell `short_answer` in the generation (found case
    aside; where the parse reworded it, the first line's tokens that carry a letter or digit outside a citation
    marker), or None without token log-probabilities or any token to score."""
    if not tokens:
        return None
    text = "".join(t.text for t in tokens)
    wanted = short_answer.strip().casefold()
    start = text.casefold().find(wanted) if wanted else -1
    if start >= 0:
        spelled = [start <= i < start + len(wanted) for i in range(len(text))]
    else:
        line = text.lstrip().split("\n", 1)[0]
        head = len(text) - len(text.lstrip()) + len(line)
        cited = {i for m in _CITATION.finditer(text[:head]) for i in range(m.start(), m.end())}
        spelled = [i < head and c.isalnum() and i not in cited for i, c in enumerate(text)]
    chosen, at = [], 0
    for t in tokens:
        if any(spelled[at : at + len(t.text)]):
            chosen.append(t)
        at += len(t.text)
    if not chosen:
        return None
    return math.exp(sum(min(0.0, t.logprob) for t in chosen) / len(chosen))


_CITATION = re.compile(r"\[\d{1,3}(?:\s*,\s*\d{1,3})*\]")


def confidence(probability: float | None, supported: bool, abstained: bool = False) -> float:
    """The answer's confidence: the mean of its token probability and its support (1 when a shown source states
    it, else 0); the support alone without a probability; 0 for an abstention."""
    if abstained:
        return 0.0
    support = 1.0 if supported else 0.0
    return support if probability is None else round((probability + support) / 2, 4)


def settle(looks: Sequence[Look]) -> tuple[int, float]:
    """Which of the looks' answers the loop keeps, and its confidence. The first look read the best-ranked
    candidates: a later answer replaces it only when no shown source stated it (or it abstained: confidence 0)
    and the later one is more confident; a later look that gives the same answer lends it its confidence when
    higher (two sets of sources agree). Keeping the more confident answer instead replaced right answers with
    wrong ones that a source of the next candidates also stated (chosen on HotpotQA dev rows, docs/results.md,
    "Which answer a second look keeps")."""
    kept, kept_confidence = 0, looks[0].confidence
    for i, look in enumerate(looks[1:], start=1):
        held = looks[kept]
        if (not held.supported or held.confidence == 0.0) and look.confidence > kept_confidence:
            kept, kept_confidence = i, look.confidence
        elif tokenize(look.short_answer) and tokenize(look.short_answer) == tokenize(held.short_answer):
            kept_confidence = max(kept_confidence, look.confidence)
    return kept, kept_confidence


@dataclass(frozen=True)
class Judging:
    """What the loop does with an answer's confidence: below `threshold`, one more search that ranks differently
    (by meaning alone where it can, else deeper down the same ranking) and a second answer (`second_look`); still
    below it, the answer is marked uncertain, its best candidate shown (`show_uncertain`) or withheld."""

    threshold: float = DEFAULT_THRESHOLD
    second_look: bool = True
    show_uncertain: bool = True


@dataclass
class Look:
    """One answer the loop considered: its confidence and the signals it came from."""

    short_answer: str
    confidence: float
    probability: float | None  # None: the backend gave no token probabilities
    supported: bool
    # What replaying another threshold from an eval row needs (evals/confidence.py): the sources the answering
    # prompt showed, as shown; those the answer cites (attributed when it cites none, as the final answer is); and
    # what the look cost: its generation, and for a second look its search as well.
    context: tuple[tuple[int, str], ...] = ()
    cited: tuple[int, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    def record(self) -> dict[str, object]:
        """The look as eval rows keep it (the evaluator scores `context` and drops it)."""
        return {
            "short_answer": self.short_answer,
            "confidence": self.confidence,
            "token_probability": None if self.probability is None else round(self.probability, 4),
            "supported": self.supported,
            "context": [{"n": n, "text": text} for n, text in self.context],
            "cited": list(self.cited),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "seconds": round(self.seconds, 3),
        }
