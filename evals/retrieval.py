"""Reader-free retrieval measurement: answer in context at k for BM25, dense and hybrid over one local index.

    python -m assistant.evals.retrieval ../shared/data/triviaqa/wiki-dev300.jsonl --index /tmp/tqa-hybrid.db \
        --k 3,5,10,50

A question counts at k when a gold alias occurs in the title and text of one of a retriever's top k passages,
normalized and matched as a phrase the way evals/scoring.py's `answer_in_context` does (TriviaQA's official
normalization). Questions whose gold answer is yes or no (HotpotQA's comparisons, `is_yes_no`) are left out: no
passage holds them. The ceiling is the share of questions with an alias in some passage of the index at all.
No model answers anything, so a run over a few hundred questions takes seconds once the index has vectors
(`assistant index embed INDEX.db`). It also times one query's embedding and one search of each retriever
(median milliseconds, on this machine, with whatever else runs on it).
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from assistant.evals.datasets import load_dataset
from assistant.evals.scoring import answer_in_context, is_yes_no, normalize_answer
from assistant.search.base import Retriever
from assistant.search.embed import load_embedder
from assistant.search.local import POOL, LocalIndex
from assistant.search.vectors import Dense

RETRIEVERS: tuple[Retriever, ...] = ("bm25", "dense", "hybrid")


@dataclass
class Measure:
    """One retriever's hits per k (questions with an alias in the top k) and its search times in ms."""

    hits: dict[int, int] = field(default_factory=dict)
    ms: list[float] = field(default_factory=list)


def _in_index(db: Path) -> list[str]:
    """Every passage's title and text, normalized and padded, to test the ceiling with phrase matches."""
    con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT title, text FROM docs").fetchall()
    finally:
        con.close()
    return [f" {normalize_answer(title + ' ' + text)} " for title, text in rows]


def measure(dataset: Path, db: Path, ks: list[int], pool: int = POOL, limit: int | None = None) -> str:
    """The report: a table of answer in context at each k per retriever, then the ceiling and timings."""
    task = load_dataset(dataset).select(limit)
    examples = [e for e in task.examples if not is_yes_no(e.answers)]
    probe = LocalIndex(db)
    name = probe.meta().get("embedder")
    if not name:
        raise SystemExit(f"{db} has no vectors — `assistant index embed {db}` first")
    embedder = load_embedder(name, threads=1)
    indexes = {r: LocalIndex(db, retriever=r, embedder=embedder, pool=pool) for r in RETRIEVERS}
    dense = indexes["dense"].dense()
    if not isinstance(dense, Dense) or dense.note:
        raise SystemExit(
            f"the dense side of {db} is not whole: {dense if not isinstance(dense, Dense) else dense.note}"
        )
    results = {r: Measure(hits=dict.fromkeys(ks, 0)) for r in RETRIEVERS}
    embed_ms: list[float] = []
    deepest = max(ks)
    for example in examples:
        start = time.perf_counter()
        embedder.embed([example.question], kind="query")
        embed_ms.append(1000 * (time.perf_counter() - start))
        for retriever, index in indexes.items():
            start = time.perf_counter()
            found = index.search(example.question, deepest)
            results[retriever].ms.append(1000 * (time.perf_counter() - start))
            texts = [f"{r.title} {r.text}" for r in found]
            for k in ks:
                results[retriever].hits[k] += answer_in_context(texts[:k], example.answers)
    everything = _in_index(db)
    needles = [[f" {n} " for n in map(normalize_answer, e.answers) if n] for e in examples]
    ceiling = sum(any(n in text for n in ns for text in everything) for ns in needles)
    n = len(examples)
    lines = [
        f"{task.name}: {n} questions ({len(task) - n} with a yes/no answer left out), index {db} "
        f"({probe.count()} passages, vectors by {name}), pool {pool}, RRF k=60",
        "",
        "| retriever | " + " | ".join(f"@{k}" for k in ks) + " | search ms (median) |",
        "|---" * (len(ks) + 2) + "|",
    ]
    for retriever, m in results.items():
        cells = " | ".join(f"{m.hits[k] / n:.3f}" for k in ks)
        lines.append(f"| {retriever} | {cells} | {statistics.median(m.ms):.1f} |")
    lines += [
        "",
        f"ceiling (an alias anywhere in the index): {ceiling / n:.3f}; query embedding: "
        f"{statistics.median(embed_ms):.1f} ms median, {max(embed_ms):.1f} ms max (1 thread)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="questions: JSONL {question, answers} or TriviaQA JSON")
    parser.add_argument("--index", type=Path, required=True, help="a local index with vectors")
    parser.add_argument("--k", default="3,5,10,50", help="the depths to count at, comma-separated")
    parser.add_argument("--pool", type=int, default=POOL, help="candidates each side hands to the fusion")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args(argv)
    ks = sorted({int(k) for k in args.k.split(",") if k.strip()})
    print(measure(args.dataset, args.index, ks, args.pool, args.limit))


if __name__ == "__main__":
    main()
