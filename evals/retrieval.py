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

With `--gold QUESTIONS=INDEX` (repeatable) it measures instead where each question's own passage ranks, for
question files that name it (`gold_passage_id`: XQuAD, TyDi QA in ../shared/data): MRR@5 (1/rank, 0 past 5)
and hit@1, hit@3 and hit@5 (the model is shown up to 3 passages, fewer when they outgrow `context_tokens`),
for each retriever, one row per file.
`bm25-words` is BM25 as the index worked before per-language text processing (b8bf122: FTS5 unicode61 over the
words as written, the query's words minus English stop words), rebuilt in memory from the index's passages, and
`hybrid-words` that fused with the dense side; `bm25-english`, `bm25-hindi`, …: the passages stemmed, in memory,
for a language that PyStemmer could stem but the index does not (the evidence for not stemming it):

    python -m assistant.evals.retrieval --gold ../shared/data/xquad/ru.questions.jsonl=/tmp/ru.db --limit 100
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from assistant import analysis
from assistant.evals.datasets import load_dataset
from assistant.evals.scoring import answer_in_context, is_yes_no, normalize_answer
from assistant.jsonl import rows as read_rows
from assistant.languages import LANGUAGES, stemmer_of
from assistant.passages import same_text
from assistant.search.base import Retriever
from assistant.search.embed import load_embedder
from assistant.search.local import POOL, STOP_WORDS, LocalIndex
from assistant.search.vectors import Dense, rrf

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


class MemoryBM25:
    """BM25 over an index's passages indexed again, in memory, under other terms (`passage_terms`, searched with
    `query_terms`): what the index would rank with another text processing. Rowids are the index's, so its dense
    side can be fused with it."""

    def __init__(
        self,
        db: Path,
        passage_terms: Callable[[str], list[str]],
        query_terms: Callable[[str], list[str]],
        title_weight: float = 2.0,
    ):
        self.query_terms = query_terms
        self.title_weight = title_weight
        self.con = sqlite3.connect(":memory:")
        self.con.execute("CREATE VIRTUAL TABLE f USING fts5(title, text, tokenize='unicode61 remove_diacritics 2')")
        source = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = source.execute("SELECT rowid, id, title, text FROM docs").fetchall()
        finally:
            source.close()
        terms = [(r, " ".join(passage_terms(t)), " ".join(passage_terms(x))) for r, _, t, x in rows]
        self.con.executemany("INSERT INTO f (rowid, title, text) VALUES (?, ?, ?)", terms)
        self.id_of = {rowid: pid for rowid, pid, _, _ in rows}
        self.text_of = {rowid: same_text(text) for rowid, _, _, text in rows}

    @classmethod
    def words(cls, db: Path) -> MemoryBM25:
        """The index as b8bf122 built and searched it: FTS5 unicode61 over the words as written; the query's
        `\\w+` words, lower-cased, minus English stop words. The "before" of per-language text processing."""

        def query(q: str) -> list[str]:
            words = list(dict.fromkeys(re.findall(r"\w+", q.lower())))
            return [w for w in words if w not in STOP_WORDS] or words

        return cls(db, lambda text: [text], query)

    @classmethod
    def stemmed(cls, db: Path, algorithm: str) -> MemoryBM25:
        """Every passage under the index's terms with the Snowball `algorithm` for all of its words."""
        return cls(
            db,
            lambda text: analysis.index_terms(text, algorithm),
            lambda q: analysis.query_terms(q, [algorithm], STOP_WORDS),
        )

    def rowids(self, query: str, n: int) -> list[int]:
        """The rowids of the `n` best passages for `query`."""
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in self.query_terms(query))
        if not match:
            return []
        sql = "SELECT rowid FROM f WHERE f MATCH ? ORDER BY bm25(f, ?, 1.0) LIMIT ?"
        return [r for (r,) in self.con.execute(sql, (match, self.title_weight, n))]

    def ids(self, query: str, n: int) -> list[str]:
        """The ids of the `n` best passages for `query`, a text met again counting once, as the index counts it
        (`LocalIndex.find`), so that every column of the gold-rank table ranks distinct texts."""
        return [self.id_of[r] for r in self.distinct(self.rowids(query, 4 * n + POOL), n)]

    def distinct(self, rowids: list[int], n: int) -> list[int]:
        """The first `n` of `rowids` whose text no earlier one has (`same_text`)."""
        seen: set[str] = set()
        kept = []
        for r in rowids:
            if self.text_of[r] not in seen and len(kept) < n:
                seen.add(self.text_of[r])
                kept.append(r)
        return kept


def snowball(lang: str) -> str | None:
    """PyStemmer's algorithm for language `lang`, whether or not the index uses it (None: it has none)."""
    import Stemmer

    name = "english" if lang == "en" else LANGUAGES[lang].name.lower() if lang in LANGUAGES else ""
    return name if name in Stemmer.algorithms() else None


def records_of(db: Path) -> dict[str, str]:
    """Passage id → the record it counts as: the record it came from (`ID#k` passages of a split document: ID),
    or the first record with a passage of the same text. TyDi QA repeats a paragraph under a new id for each of
    its questions (ko: 246 passages, 206 texts), and the loop shows such a text once, so a question's gold
    passage is found when its text is."""
    con = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT id, doc_id, text FROM docs ORDER BY rowid").fetchall()
    finally:
        con.close()
    first: dict[str, str] = {}  # a passage's text → the first record that has it
    return {pid: first.setdefault(same_text(text), doc) for pid, doc, text in rows}


def gold_rank(found: list[str], gold: str, doc_of: dict[str, str]) -> int | None:
    """The 1-based rank of the first passage of record `gold` (or of one with the text of one of its passages,
    `records_of`) among `found` passage ids (None: not there). An id the index lacks counts as its record's."""
    wanted = {gold} | {record for pid, record in doc_of.items() if pid.split("#")[0] == gold}
    for rank, pid in enumerate(found, 1):
        if doc_of.get(pid, pid.split("#")[0]) in wanted:
            return rank
    return None


def _searches(db: Path, lang: str, depth: int, pool: int) -> dict[str, Callable[[str], list[str]]]:
    """Each retriever of the gold-rank table, as a function from a question to the ids of its top `depth`: the
    words as written (BM25 alone and fused with the dense side); for a language that PyStemmer can stem but the
    index does not (assistant/languages.py), BM25 with it stemmed; then the index's own bm25, dense and hybrid."""
    words = MemoryBM25.words(db)
    searches: dict[str, Callable[[str], list[str]]] = {"bm25-words": lambda q: words.ids(q, depth)}
    algorithm = snowball(lang)
    if algorithm and algorithm != stemmer_of(lang):
        stemmed = MemoryBM25.stemmed(db, algorithm)
        searches[f"bm25-{algorithm}"] = lambda q: stemmed.ids(q, depth)
    embedder_name = LocalIndex(db).meta().get("embedder")
    embedder = load_embedder(embedder_name, threads=1) if embedder_name else None
    if embedder is not None:
        dense = LocalIndex(db, embedder=embedder).dense()
        if isinstance(dense, Dense):
            fuse = dense

            def hybrid_words(q: str) -> list[str]:
                return [words.id_of[r] for r in words.distinct(rrf([words.rowids(q, pool), fuse.top(q, pool)]), depth)]

            searches["hybrid-words"] = hybrid_words
    for retriever in RETRIEVERS if embedder is not None else ("bm25",):
        index = LocalIndex(db, retriever=retriever, embedder=embedder, pool=pool)
        searches[retriever] = lambda q, index=index: [p.id for p in index.search(q, depth)]  # type: ignore[misc]
    return searches


def measure_gold(questions: Path, db: Path, limit: int | None = None, depth: int = 5, pool: int = POOL) -> list[str]:
    """Markdown rows, one per retriever, of where the gold passage of `questions` ranks in the index `db`."""
    records = read_rows(questions)
    records = [r for r in records if r.get("gold_passage_id")][:limit]
    if not records:
        raise SystemExit(f"{questions}: no question names its gold_passage_id")
    doc_of = records_of(db)
    label = f"{questions.parent.name}/{questions.name.split('.')[0]}"
    lang = str(records[0].get("lang") or questions.name.split(".")[0])
    rows = []
    for retriever, search in _searches(db, lang, depth, pool).items():
        ranks = [gold_rank(search(r["question"]), r["gold_passage_id"], doc_of) for r in records]
        n = len(ranks)
        mrr = sum(1 / r for r in ranks if r) / n
        hits = " | ".join(f"{sum(1 for r in ranks if r and r <= k) / n:.3f}" for k in (1, 3, depth))
        rows.append(f"| {label} | {n} | {retriever} | {mrr:.3f} | {hits} |")
    return rows


GOLD_HEAD = ["| questions | n | retriever | MRR@5 | hit@1 | hit@3 | hit@5 |", "|---|---|---|---|---|---|---|"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dataset", type=Path, nargs="?", help="questions: JSONL {question, answers} or TriviaQA JSON")
    parser.add_argument("--index", type=Path, help="a local index with vectors")
    parser.add_argument(
        "--gold",
        action="append",
        default=[],
        metavar="QUESTIONS=INDEX",
        help="where the gold passage ranks: a question file with gold_passage_id and its index (repeatable)",
    )
    parser.add_argument("--k", default="3,5,10,50", help="the depths to count at, comma-separated")
    parser.add_argument("--pool", type=int, default=POOL, help="candidates each side hands to the fusion")
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args(argv)
    if args.gold:
        rows = list(GOLD_HEAD)
        for pair in args.gold:
            questions, _, db = pair.partition("=")
            rows += measure_gold(Path(questions), Path(db), args.limit, pool=args.pool)
        print("\n".join(rows))
        return
    if args.dataset is None or args.index is None:
        parser.error("give a dataset and --index, or --gold QUESTIONS=INDEX")
    ks = sorted({int(k) for k in args.k.split(",") if k.strip()})
    print(measure(args.dataset, args.index, ks, args.pool, args.limit))


if __name__ == "__main__":
    main()
