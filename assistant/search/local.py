"""A local search index: SQLite FTS5 ranked by BM25, and embeddings, over JSON Lines passages, so search works
offline.

Build one with `build_index` (assistant/search/index_file.py, which also upgrades and embeds it; its names are
re-exported here):

    PYTHONPATH=. python -c "from pathlib import Path; from assistant.search.local import build_index; \
        print(build_index([Path('passages.jsonl')], Path('index.db')))"

then `LocalIndex(Path('index.db')).search('who painted the night watch')`. User text never reaches FTS5 as
syntax: it is split into words, English stop words dropped, each word turned into the index's terms the way its
passages were (assistant/analysis.py: n-grams of scripts without spaces, the stems of each stemmer the index
used), each term quoted, and the terms OR-ed.

`retriever` chooses the ranking: `hybrid` (the default) fuses the BM25 top `pool` and the dense top `pool`
(embeddings, assistant/search/vectors.py) by reciprocal rank fusion; `bm25` and `dense` use one side alone. An
index without vectors, with damaged ones, or whose embedder cannot load here, is searched with BM25 alone, and
`find` says so in its outcome's notes. `embed_index` (`assistant index embed INDEX.db`) adds the vectors.
"""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import get_args

from assistant import analysis
from assistant.errors import BadInput, SearchError
from assistant.passages import same_text
from assistant.search.base import Retriever, SearchOutcome, SearchResult
from assistant.search.embed import Embedder, load_embedder
from assistant.search.index_file import (
    SCHEMA_VERSION,
    BuildReport,
    IndexUnusable,
    build_index,
    embed_index,
    index_embedder,
    index_stemmers,
    migrate_index,
    schema_version,
    version_problem,
)
from assistant.search.vectors import Dense, NoDense, load_dense, rrf

# build_index and friends live in index_file.py; callers have always found them here.
__all__ = [
    "POOL",
    "SCHEMA_VERSION",
    "BuildReport",
    "LocalIndex",
    "build_index",
    "embed_index",
    "fts_query",
    "index_embedder",
    "migrate_index",
    "query_terms",
]

SNIPPET_CHARS = 200

# Small on purpose: question words and glue. Content words like "first" or "name" stay searchable.
_STOP = """a about an and are as at be been but by can could did do does for from had has have he her his
    how i in into is it its me my near not of on or our she so than that the their them then there these they
    this those to was we were what when where which who whom whose why will with would you your s t"""
STOP_WORDS = frozenset(_STOP.split())


POOL = 40  # candidates each side hands to the fusion: deeper than what is shown, as issue 13 asks


def query_terms(query: str, stemmers: list[str | None] | tuple[str | None, ...] = (None,)) -> list[str]:
    """The terms `query` is searched for in an index built with `stemmers` (None: words as they are):
    casefolded, de-duplicated, stop words dropped (a query of only stop words, "The Who", keeps them)."""
    return analysis.query_terms(query, stemmers, STOP_WORDS)


def fts_query(query: str, stemmers: list[str | None] | tuple[str | None, ...] = (None,)) -> str:
    """An FTS5 MATCH expression that cannot be a syntax error: each term quoted, OR-ed together."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in query_terms(query, stemmers))


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"


def _distinct(results: list[SearchResult]) -> list[SearchResult]:
    """`results` without a passage whose text an earlier one has (`same_text`)."""
    seen: set[str] = set()
    kept = []
    for r in results:
        text = same_text(r.text)
        if text not in seen:
            seen.add(text)
            kept.append(r)
    return kept


class LocalIndex:
    """Searches an index made by `build_index` with `retriever`; `title_weight` scales BM25's title matches
    against text matches; `embedder` (else the one the index names, loaded with `threads`) embeds queries."""

    name = "local"
    cacheable = False  # as fast as the cache, and a rebuilt index must not serve stale hits

    def __init__(
        self,
        path: Path,
        title_weight: float = 2.0,
        retriever: Retriever = "hybrid",
        embedder: Embedder | None = None,
        pool: int = POOL,
        threads: int | None = None,
    ):
        if retriever not in get_args(Retriever):
            raise BadInput(f"unknown retriever {retriever!r} — choose from {', '.join(get_args(Retriever))}")
        self.path = Path(path).expanduser()
        self.title_weight = title_weight
        self.retriever = retriever
        self.embedder = embedder
        self.pool = pool
        self.threads = threads
        self._con: sqlite3.Connection | None = None
        self._dense: Dense | NoDense | None = None  # loaded at the first search that needs it
        self._stemmers: list[str | None] = []  # how the index's passages were processed: its queries must match

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.path.is_file():
                raise IndexUnusable(
                    f"index not found: {self.path} — build one with "
                    f"`assistant index build FILE.jsonl --out {self.path}`"
                )
            con = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
            try:
                version = schema_version(con, self.path)
            except SearchError:
                con.close()
                raise
            if version != SCHEMA_VERSION:
                con.close()
                # Not a SearchError: no fallback backend should hide an index that needs the user's hand.
                raise BadInput(version_problem(self.path, version))
            self._stemmers = index_stemmers(con)
            self._con = con
        return self._con

    def check(self) -> None:
        """Open the index now, so a missing, foreign or outdated file fails before a run rather than in it."""
        self._db()

    def _result(self, row: tuple[str, str, str, str]) -> SearchResult:
        rid, title, text, url = row
        return SearchResult(id=rid, title=title, url=url, snippet=_snippet(text), text=text, backend=self.name)

    def _bm25(self, query: str, n: int) -> list[int]:
        """The rowids of the `n` best BM25 matches of `query`."""
        con = self._db()
        match = fts_query(query, self._stemmers)
        if not match:
            return []
        sql = "SELECT rowid FROM docs_fts WHERE docs_fts MATCH ? ORDER BY bm25(docs_fts, ?, 1.0) LIMIT ?"
        return [r for (r,) in con.execute(sql, (match, self.title_weight, n)).fetchall()]

    def by_meaning(self) -> LocalIndex | None:
        """This index searched by its dense side alone, for a search that must rank differently from the first
        (the loop's second look), sharing the loaded vectors; None unless it fuses BM25 with usable vectors (an
        index searched with BM25 alone by the user's choice stays so)."""
        if self.retriever != "hybrid" or isinstance(self.dense(), NoDense):
            return None
        view = LocalIndex(self.path, self.title_weight, "dense", self.embedder, self.pool, self.threads)
        view._con, view._dense, view._stemmers = self._db(), self._dense, self._stemmers
        return view

    def dense(self) -> Dense | NoDense:
        """The dense side (vectors in memory and the query embedder), or NoDense saying why there is none."""
        if self._dense is None:
            load = functools.partial(load_embedder, threads=self.threads)
            try:
                self._dense = load_dense(self._db(), self.path, self.embedder, load)
            except NoDense as e:
                self._dense = e
            except sqlite3.DatabaseError as e:  # a `vectors` table of another shape, a damaged page
                redo = f"`assistant index embed {self.path} --redo`"
                self._dense = NoDense(
                    f"cannot read the vectors of {self.path} ({e}), so it was searched with BM25 "
                    f"alone — re-embed with {redo}"
                )
        return self._dense

    def find(self, query: str, max_results: int = 5) -> SearchOutcome:
        """Up to `max_results` passages for `query`, best first, with notes when the retriever had to fall back.
        A text met again under another id counts once, and the next passage takes its place: a dataset may repeat
        a paragraph under one id per question (TyDi QA: 246 Korean passages, 206 texts), and the loop shows a text
        once (RunState), so a repeat would only shorten what the model reads."""
        notes: list[str] = []
        try:
            dense = self.dense() if self.retriever != "bm25" else None
            if isinstance(dense, NoDense):
                notes.append(str(dense))
                dense = None
            elif dense is not None and dense.note:
                notes.append(dense.note)
            depth = 2 * max_results  # room for repeats; deeper while they leave fewer than asked for
            while True:
                ranked = self._ranked(query, dense, depth)
                results = _distinct(self._rows(ranked))[:max_results]
                if len(results) >= max_results or len(ranked) < depth:
                    break
                depth *= 2
        except sqlite3.Error as e:
            raise SearchError(f"local index query failed: {e} — rebuild {self.path} if this repeats") from None
        return SearchOutcome(results, backend=self.name, notes=notes)

    def _ranked(self, query: str, dense: Dense | None, depth: int) -> list[int]:
        """The rowids of the best `depth` passages for `query`: BM25's without `dense`, else the retriever's."""
        if dense is None:
            return self._bm25(query, depth)
        if self.retriever == "dense":
            return dense.top(query, depth)
        pool = max(self.pool, depth)
        return rrf([self._bm25(query, pool), dense.top(query, pool)])[:depth]

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Up to `max_results` passages for `query`, best first (`find` also says how they were found)."""
        return self.find(query, max_results).results

    def _rows(self, rowids: list[int]) -> list[SearchResult]:
        """The passages of these rowids, in this order."""
        if not rowids:
            return []
        marks = ",".join("?" * len(rowids))
        sql = f"SELECT rowid, id, title, text, url FROM docs WHERE rowid IN ({marks})"
        rows = {r[0]: r[1:] for r in self._db().execute(sql, rowids).fetchall()}
        return [self._result(rows[r]) for r in rowids if r in rows]

    def get(self, id: str) -> SearchResult | None:
        """The passage with this id, or None."""
        row = self._db().execute("SELECT id, title, text, url FROM docs WHERE id = ?", (id,)).fetchone()
        return self._result(row) if row else None

    def count(self) -> int:
        """How many passages the index holds."""
        return self._db().execute("SELECT count(*) FROM docs").fetchone()[0]

    def meta(self) -> dict[str, str]:
        """What the index was built from and when: built_at, sources (a JSON list), count; embedder, if any."""
        return dict(self._db().execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        """Release the database connection and the vectors held in memory."""
        if self._con is not None:
            self._con.close()
            self._con = None
        self._dense = None
