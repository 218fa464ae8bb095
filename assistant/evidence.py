"""Evidence selection: show each candidate source as its sentences that bear on the question, not whole.

    from assistant.evidence import excerpts
    excerpts("Who painted The Night Watch?", [passage_a, passage_b], per_source=60, count=len_in_tokens)

On a CPU every prompt token is prefill time, so the evidence of more candidates should fit in the tokens that
three whole passages took. Within the sources about to be shown, each sentence is scored against the question's
content words with BM25 (idf over all the candidates' sentences, so a word every sentence shares counts little);
each source keeps its best sentence, then the next best and its neighbours while `per_source` tokens allow,
printed in their original order with "…" where sentences were left out. A source none of whose sentences shares
a word with the question (one found by meaning alone) keeps its opening sentences: on Wikipedia-like text the
first sentence says what the page is about. The title is shown beside the excerpt by the prompt
(`prompting.render_sources`), and citations still name the whole source: only what the model reads is shorter.
How many sources are shown and how many tokens each gets are settings (`shown_sources`, `evidence_tokens`),
measured reader-free by evals/context.py (docs/results.md, "Evidence selection").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence

from assistant.passages import STOP_WORDS, approx_tokens, cap_tokens, split_sentences, tokenize


def _terms(text: str) -> list[str]:
    return [t for t in tokenize(text) if t not in STOP_WORDS]


def sentence_scores(
    question: str, sentences: Sequence[Sequence[str]], k1: float = 1.2, b: float = 0.5
) -> list[list[float]]:
    """BM25 of each sentence of each source (`sentences[i][j]`) against the question, with idf over them all."""
    terms = set(_terms(question))
    docs = [[_terms(s) for s in source] for source in sentences]
    flat = [d for source in docs for d in source]
    n = len(flat)
    avg = sum(map(len, flat)) / n if n else 0.0
    df = Counter(t for d in flat for t in set(d) if t in terms)
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in terms}
    scores = []
    for source in docs:
        row = []
        for d in source:
            tf = Counter(d)
            norm = k1 * (1 - b + b * len(d) / avg) if avg else k1
            row.append(sum(idf[t] * tf[t] * (k1 + 1) / (tf[t] + norm) for t in terms if tf[t]))
        scores.append(row)
    return scores


def pick(scores: Sequence[float], costs: Sequence[int], budget: int) -> list[int]:
    """The sentences one source keeps within `budget` tokens (`costs[j]` each, plus a gap marker's share): the
    best first, then by score, ties and zero scores going to the sentences nearest the best; in text order."""
    if not scores:
        return []
    best = max(range(len(scores)), key=lambda j: (scores[j], -j)) if any(scores) else 0
    order = sorted(range(len(scores)), key=lambda j: (-scores[j], abs(j - best), j))
    kept: list[int] = []
    used = 0
    for j in order:
        if used + costs[j] + 1 <= budget or not kept:
            kept.append(j)
            used += costs[j] + 1
    return sorted(kept)


def excerpts(
    question: str,
    texts: Sequence[str],
    per_source: int,
    count: Callable[[str], int] = approx_tokens,
) -> list[str]:
    """Each text as its sentences that bear most on `question`, in at most about `per_source` tokens (a single
    sentence longer than that is cut, with a marker); a text that already fits is returned whole."""
    split = [split_sentences(t) or [t] for t in texts]
    scores = sentence_scores(question, split)
    out = []
    for text, sentences, row in zip(texts, split, scores, strict=True):
        if count(text) <= per_source:
            out.append(" ".join(text.split()))
            continue
        kept = pick(row, [count(s) for s in sentences], per_source)
        parts = []
        for i, j in enumerate(kept):
            if i and j != kept[i - 1] + 1:
                parts.append("…")
            parts.append(sentences[j])
        excerpt = " ".join(parts)
        out.append(cap_tokens(excerpt, per_source, count) if count(excerpt) > per_source else excerpt)
    return out
