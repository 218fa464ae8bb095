"""Dense vectors inside a search index file, their brute-force search, and reciprocal rank fusion of rankings.

    assistant index embed INDEX.db        # embeds the passages that have no vector yet; rerun it to resume

The vectors live in the index's own SQLite file, so one file stays what a user copies: table `vectors`
(`rowid` of the passage in `docs`, `vec` its embedding as `dim` little-endian float32 values) and the meta keys
`embedder` (a name `load_embedder` takes, assistant/search/embed.py) and `embedder_dim`. The table is optional:
without it an index searches with BM25 alone, and a reader of index schema 1 that predates it ignores it, so it
needs no new `SCHEMA_VERSION`. Each batch of vectors is committed on its own, so an index being embedded keeps
answering searches meanwhile, and a stopped run loses at most one batch.

Search is a dot product against every vector (`Dense.top`): instant for thousands of passages, linear in their
number (a million 384-d vectors are 1.5 GB of memory and ~0.4 s a query). Past `ANN_FROM` vectors, or when asked
(`assistant index ann`), an approximate vector index (faiss IVF-flat, assistant/search/ann.py) stored in the same
file answers instead, in milliseconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from assistant.errors import AssistantError
from assistant.search.embed import Embedder, EmbedderUnavailable, passage_text

RRF_K = 60  # Cormack et al. (2009): k = 60 damps the weight of the very first ranks
BATCH = 32
VECTORS_TABLE = "CREATE TABLE IF NOT EXISTS vectors (rowid INTEGER PRIMARY KEY, vec BLOB NOT NULL)"
# Every write to `vectors` counts up the meta key `vectors_changed` in its transaction: what an approximate vector
# index built from them records, to know when it is stale (assistant/search/ann.py).
BUMP = (
    "INSERT INTO meta (key, value) VALUES ('vectors_changed', '1') "
    "ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1"
)
T = TypeVar("T", bound=Hashable)


def rrf(rankings: Sequence[Sequence[T]], k: int = RRF_K) -> list[T]:
    """Reciprocal rank fusion: items by the sum of 1/(k + rank) over the rankings (rank 1 first) that hold them;
    a tie keeps the order in which the items were first met (the first ranking's before the second's)."""
    scores: dict[T, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores, key=lambda item: -scores[item])


@dataclass
class EmbedReport:
    """What `embed_index` did: passages embedded now, how many have vectors in all, and the seconds it took."""

    out: Path
    embedder: str
    embedded: int
    total: int
    seconds: float
    ann: str = ""  # what was done about the approximate vector index (assistant/search/ann.py `refresh`)

    def __str__(self) -> str:
        if not self.embedded:
            done = f"all {self.total} passages already have vectors ({self.embedder})"
        else:
            rate = self.seconds / self.embedded * 1000
            done = (
                f"{self.embedded} passages embedded with {self.embedder} in {self.seconds:.0f} s "
                f"({rate:.0f} s per 1,000; {self.total} have vectors)"
            )
        return f"{done}; {self.ann}" if self.ann else done


def stored_embedder(con: sqlite3.Connection) -> tuple[str | None, int | None]:
    """The embedder name and dimension an index's meta records, (None, None) before any vectors."""
    meta = dict(con.execute("SELECT key, value FROM meta WHERE key IN ('embedder', 'embedder_dim')").fetchall())
    dim = meta.get("embedder_dim")
    return meta.get("embedder"), int(dim) if dim and dim.isdigit() else None


def embed_vectors(
    con: sqlite3.Connection,
    path: Path,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
    redo: bool = False,
) -> EmbedReport:
    """Embed every passage of the open index `con` that has no vector yet, one committed batch at a time;
    `progress(done, todo)` after each batch; `redo` drops the old vectors first."""
    start = time.perf_counter()
    name, dim = stored_embedder(con)
    if not redo and name and (name, dim) != (embedder.name, embedder.dim):
        raise AssistantError(
            f"{path} holds vectors of {name} ({dim} dimensions), not {embedder.name} ({embedder.dim}) — "
            f"finish them with `--embedder {name}`, or replace them with `--embedder {embedder.name} --redo`"
        )
    with con:
        con.execute(VECTORS_TABLE)
        if redo:
            con.execute("DELETE FROM vectors")
            con.execute(BUMP)
        meta = {"embedder": embedder.name, "embedder_dim": str(embedder.dim)}
        con.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())
    missing = "FROM docs d LEFT JOIN vectors v ON v.rowid = d.rowid WHERE v.rowid IS NULL"
    todo = con.execute(f"SELECT count(*) {missing}").fetchone()[0]
    done = last = 0
    if progress:
        progress(0, todo)
    sql = f"SELECT d.rowid, d.title, d.text {missing} AND d.rowid > ? ORDER BY d.rowid LIMIT {BATCH}"
    while batch := con.execute(sql, (last,)).fetchall():
        vectors = embedder.embed([passage_text(title, text) for _, title, text in batch], kind="passage")
        if vectors.shape != (len(batch), embedder.dim):
            raise AssistantError(
                f"embedder {embedder.name} returned {vectors.shape}, not ({len(batch)}, {embedder.dim})"
            )
        blobs = [v.astype("<f4").tobytes() for v in vectors]
        with con:  # one transaction a batch: readers wait milliseconds, and a stop loses one batch at most
            con.executemany(
                "INSERT INTO vectors (rowid, vec) VALUES (?, ?)", [(r[0], b) for r, b in zip(batch, blobs, strict=True)]
            )
            con.execute(BUMP)
        last, done = batch[-1][0], done + len(batch)
        if progress:
            progress(done, todo)
    total = con.execute("SELECT count(*) FROM vectors").fetchone()[0]
    return EmbedReport(path, embedder.name, done, total, time.perf_counter() - start)


class NoDense(Exception):
    """Why an index cannot be searched by meaning now; the message is the note a search shows."""


@dataclass
class Dense:
    """An index's dense side: its vectors in memory (`matrix` rows match `rowids`) searched by brute force, or its
    approximate vector index (`ann`, assistant/search/ann.py), which holds them itself; and the embedder that made
    them."""

    embedder: Embedder
    rowids: np.ndarray
    matrix: np.ndarray
    note: str = ""  # what a search should say although the dense side works (vectors on only some passages)
    ann: Any = None  # a faiss index whose ids are the passages' rowids

    def top(self, query: str, n: int) -> list[int]:
        """The rowids of the `n` passages nearest to `query` in meaning, nearest first."""
        size = self.ann.ntotal if self.ann is not None else len(self.rowids)
        if not size or n <= 0:
            return []
        q = self.embedder.embed([query], kind="query")[0]
        if self.ann is not None:
            _, ids = self.ann.search(np.ascontiguousarray(q[None, :], dtype=np.float32), min(n, size))
            return [int(i) for i in ids[0] if i >= 0]
        scores = self.matrix @ q
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        return [int(r) for r in self.rowids[best[np.argsort(-scores[best], kind="stable")]]]


BM25_ALONE = "searched with BM25 alone"


def read_vectors(con: sqlite3.Connection, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of the open index `con` as (rowids, matrix), checked; NoDense, with the note to show, when
    there are none or they are damaged."""
    name, dim = stored_embedder(con)
    has_table = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vectors'").fetchone()
    rows = con.execute("SELECT rowid, vec FROM vectors ORDER BY rowid").fetchall() if has_table else []
    if not rows or not name:
        raise NoDense(
            f"{path} has no vectors yet, so it was {BM25_ALONE} — add them with `assistant index embed {path}`"
        )
    redo = f"re-embed with `assistant index embed {path} --redo`"
    bad = [rowid for rowid, vec in rows if not isinstance(vec, bytes) or not dim or len(vec) != 4 * dim]
    if bad:
        raise NoDense(
            f"{len(bad)} of the {len(rows)} vectors in {path} are not {dim} float32 values (the first: passage "
            f"rowid {bad[0]}), so it was {BM25_ALONE} — {redo}"
        )
    matrix = np.frombuffer(b"".join(vec for _, vec in rows), dtype="<f4").reshape(len(rows), dim or 0)
    if not np.isfinite(matrix).all():
        raise NoDense(f"{path} holds vectors that are not finite numbers, so it was {BM25_ALONE} — {redo}")
    rowids = np.fromiter((r for r, _ in rows), dtype=np.int64, count=len(rows))
    return rowids, matrix


def load_dense(
    con: sqlite3.Connection, path: Path, embedder: Embedder | None, load: Callable[[str], Embedder]
) -> Dense:
    """The dense side of the open index `con`, using `embedder` or else `load(name the index records)`;
    NoDense, with the note to show, when there are no vectors, they are damaged, or no embedder loads. An index
    with a fresh approximate vector index is searched through it, without loading its vectors; one whose ANN
    cannot be used is searched by brute force, and the note says why."""
    from assistant.search import ann

    name, dim = stored_embedder(con)
    count, _ = ann.vectors_now(con)
    notes = []
    index = None
    if count and name and dim and ann.stored(con) is not None:
        try:
            index = ann.load_ann(con, path, dim)
        except ann.NoAnn as e:
            notes.append(str(e))
    if index is None:
        rowids, matrix = read_vectors(con, path)
    else:
        rowids, matrix = np.zeros(0, dtype=np.int64), np.zeros((0, dim or 0), dtype=np.float32)
    if embedder is None:
        try:
            embedder = load(name or "")
        except EmbedderUnavailable as e:
            raise NoDense(f"dense retrieval is off ({e}), so {path} was {BM25_ALONE}") from None
    if (embedder.name, embedder.dim) != (name, dim):
        raise NoDense(
            f"the vectors of {path} come from {name} ({dim} dimensions), not {embedder.name} ({embedder.dim}), "
            f"so it was {BM25_ALONE} — search with {name}, or re-embed with `assistant index embed {path} --redo "
            f"--embedder {embedder.name}`"
        )
    total = con.execute("SELECT count(*) FROM docs").fetchone()[0]
    if count < total:
        notes.append(f"only {count} of the {total} passages of {path} have vectors — `assistant index embed {path}`")
    return Dense(embedder, rowids, matrix, "; ".join(notes), ann=index)
