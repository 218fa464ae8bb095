"""An approximate vector index for indexes of hundreds of thousands of passages and more: faiss IVF-flat, kept
inside the index's own SQLite file.

    assistant index ann INDEX.db              # build it now (any size); `--drop` removes it
    assistant index embed INDEX.db            # builds it past ANN_FROM vectors, and rebuilds a stale one

Brute force (`Dense.top` in assistant/search/vectors.py) reads every vector for every query: ~0.1 s at 200,000
passages and ~0.4 s at a million on two cores, all of them in memory. IVF-flat partitions the vectors around
`lists` centres (k-means) and compares a query with the vectors of the `NPROBE` nearest centres only: 0.7 to 1.6 ms
a query in the same measurement, which chose it over HNSW (faiss, usearch) and sqlite-vec (docs/results.md, "A
vector index for millions of passages"; `bench/vector_index.py`). It holds the vectors itself, so an index
searched through it does not also load them as a matrix.

Where it lives: table `ann` holds `faiss.serialize_index`'s bytes in parts of `PART_BYTES` (SQLite refuses a value
over 1 GB, and a million 384-d vectors are 1.5 GB), and the meta key `ann` a JSON record of how it was built and
over which vectors (`count`, `last_rowid`, and `vectors_changed`: every write to the vectors counts it up). It is
optional: an index without it searches by brute force, and so
does one whose vectors changed since it was built (stale, with a note), or a Python without faiss (`pip install
'search-assistant[ann]'`, with a note).
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from assistant.errors import AssistantError, BadInput

ANN_FROM = 200_000  # vectors past which `index embed` builds one: brute force stays right below (measured)
NPROBE = 16  # lists searched per query: recall@10 1.000 on synthetic clustered vectors at 200,000 and 1,000,000
PART_BYTES = 256 * 2**20
ANN_TABLE = "CREATE TABLE IF NOT EXISTS ann (part INTEGER PRIMARY KEY, data BLOB NOT NULL)"
KIND = "faiss-ivf-flat"
INSTALL = "pip install 'search-assistant[ann]'"


class NoAnn(Exception):
    """Why an index's approximate vector index cannot be used now; the message is the note a search shows."""


def lists_for(n: int) -> int:
    """The number of IVF lists for `n` vectors: 4·√n (the measured setting), but no more than k-means can train
    from `n` points (39 a centre, faiss's minimum without a warning), and at least 1."""
    return max(1, min(int(4 * math.sqrt(n)), n // 39))


def faiss_module() -> Any:
    """faiss, or NoAnn saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise NoAnn(f"faiss is not installed ({INSTALL})") from None
    return faiss


@dataclass
class AnnReport:
    """What `build_ann` did."""

    path: Path
    vectors: int
    lists: int
    seconds: float
    size: int  # bytes stored

    def __str__(self) -> str:
        return (
            f"approximate vector index ({KIND}, {self.lists} lists, {NPROBE} searched a query) over {self.vectors} "
            f"vectors built in {self.seconds:.1f} s ({self.size / 2**20:.1f} MB)"
        )


def stored(con: sqlite3.Connection) -> dict[str, Any] | None:
    """The meta record of the index's ANN, None when it has none."""
    row = con.execute("SELECT value FROM meta WHERE key = 'ann'").fetchone()
    if not row:
        return None
    try:
        record = json.loads(row[0])
    except ValueError:
        return {"kind": "unreadable"}
    return record if isinstance(record, dict) else {"kind": "unreadable"}


def vectors_now(con: sqlite3.Connection) -> tuple[int, int]:
    """How many vectors the index holds, and the last passage rowid that has one."""
    has_table = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'vectors'").fetchone()
    if not has_table:
        return 0, 0
    count, last = con.execute("SELECT count(*), coalesce(max(rowid), 0) FROM vectors").fetchone()
    return int(count), int(last)


def _changed(con: sqlite3.Connection) -> str:
    """The index's count of writes to its vectors (assistant/search/vectors.py `BUMP`)."""
    row = con.execute("SELECT value FROM meta WHERE key = 'vectors_changed'").fetchone()
    return str(row[0]) if row else "0"


def staleness(con: sqlite3.Connection) -> str | None:
    """Why the stored ANN does not match the vectors (None: it does, or there is none)."""
    record = stored(con)
    if record is None:
        return None
    if record.get("kind") != KIND:
        return f"its approximate vector index is of an unknown kind ({record.get('kind')!r})"
    count, last = vectors_now(con)
    if (record.get("count"), record.get("last_rowid")) != (count, last):
        return f"its approximate vector index was built over {record.get('count')} vectors, and it has {count} now"
    if record.get("vectors_changed") != _changed(con):
        return "its vectors were written again after its approximate vector index was built"
    return None


def build_ann(con: sqlite3.Connection, path: Path, threads: int | None = None, lists: int | None = None) -> AnnReport:
    """Build the IVF-flat index of every vector in the open index `con` and store it in the file, replacing any
    older one, in one transaction (searches meanwhile use the old one, or brute force)."""
    from assistant.search.vectors import NoDense, read_vectors

    faiss = _faiss_or_error()
    start = time.perf_counter()
    count, last = vectors_now(con)  # what it is built over, taken before reading: a later write makes it stale
    changed = _changed(con)
    if not count:
        raise BadInput(f"{path} has no vectors to index — add them with `assistant index embed {path}`")
    try:
        rowids, matrix = read_vectors(con, path)
    except NoDense as e:  # damaged: the note says how and how to fix it
        raise BadInput(f"cannot build an approximate vector index: {e}") from None
    n, dim = matrix.shape
    lists = lists or lists_for(n)
    if not 1 <= lists <= n:
        raise BadInput(f"--lists must be between 1 and the number of vectors ({n}), not {lists}")
    if threads:
        faiss.omp_set_num_threads(threads)
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(matrix)
    index.add_with_ids(matrix, rowids)
    index.nprobe = min(NPROBE, lists)
    del matrix  # the index holds its own copy
    data = faiss.serialize_index(index)  # a uint8 array: written a part at a time, never copied whole
    record = {"kind": KIND, "lists": lists, "nprobe": index.nprobe, "dim": dim, "count": count, "last_rowid": last}
    record |= {"vectors_changed": changed, "faiss": faiss.__version__}
    with con:
        con.execute(ANN_TABLE)
        con.execute("DELETE FROM ann")
        parts = ((i, data[at : at + PART_BYTES].tobytes()) for i, at in enumerate(range(0, len(data), PART_BYTES)))
        con.executemany("INSERT INTO ann (part, data) VALUES (?, ?)", parts)
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('ann', ?)", (json.dumps(record),))
    return AnnReport(path, n, lists, time.perf_counter() - start, len(data))


def drop_ann(con: sqlite3.Connection) -> bool:
    """Remove the index's ANN; whether it had one."""
    had = stored(con) is not None
    with con:
        con.execute("DROP TABLE IF EXISTS ann")
        con.execute("DELETE FROM meta WHERE key = 'ann'")
    return had


def load_ann(con: sqlite3.Connection, path: Path, dim: int) -> Any:
    """The index's fresh ANN, ready to search (one thread: a question's query is one vector); NoAnn with the note
    to show when there is none, it is stale or damaged, or faiss is missing."""
    record = stored(con)
    if record is None:
        raise NoAnn(f"{path} has no approximate vector index")
    fix = f"`assistant index ann {path}` rebuilds it"
    why = staleness(con)
    if why:
        raise NoAnn(f"{path}: {why}, so it was searched by brute force — {fix}")
    try:
        faiss = faiss_module()
    except NoAnn as e:
        raise NoAnn(f"{path} has an approximate vector index, but {e}: searched by brute force") from None
    try:
        # Read into one array a part at a time: joining the parts would hold the index's bytes twice.
        (size,) = con.execute("SELECT coalesce(sum(length(CAST(data AS BLOB))), 0) FROM ann").fetchone()
        data = np.empty(int(size), dtype=np.uint8)
        at = 0
        for (part,) in con.execute("SELECT CAST(data AS BLOB) FROM ann ORDER BY part"):
            data[at : at + len(part)] = np.frombuffer(part, dtype=np.uint8)
            at += len(part)
        index = faiss.deserialize_index(data)
    except Exception as e:  # faiss raises RuntimeError with its C++ message for a damaged stream
        raise NoAnn(f"{path}: its approximate vector index cannot be read ({_first_line(e)}) — {fix}") from None
    if index.d != dim or index.ntotal != record["count"]:
        raise NoAnn(f"{path}: its approximate vector index does not match its vectors — {fix}")
    faiss.omp_set_num_threads(1)
    faiss.extract_index_ivf(index).nprobe = int(record.get("nprobe") or NPROBE)
    return index


def _faiss_or_error() -> Any:
    try:
        return faiss_module()
    except NoAnn as e:
        raise AssistantError(f"cannot build an approximate vector index: {e}") from None


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]


def refresh(con: sqlite3.Connection, path: Path, threads: int | None = None) -> str:
    """After the vectors of `con` changed (`index embed`, `index add`): rebuild a stale ANN, and build one where
    there is none past ANN_FROM vectors; what was done, "" for nothing."""
    record = stored(con)
    count, _ = vectors_now(con)
    if (record is None and count < ANN_FROM) or (record is not None and staleness(con) is None):
        return ""
    try:
        faiss_module()
    except NoAnn as e:
        what = "its approximate vector index is stale" if record else f"{count} vectors are many for brute force"
        return f"{what}, and {e}: dense search reads every vector"
    return str(build_ann(con, path, threads))
