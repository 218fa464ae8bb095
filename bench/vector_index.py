"""Vector indexes for a Wikipedia-sized local index, measured against the brute-force dot product it uses today.

    pip install faiss-cpu usearch sqlite-vec psutil   # not the project's dependencies: only this benchmark's
    nice -n 19 python bench/vector_index.py --n 1000000 --threads 2

Synthetic vectors shaped like sentence embeddings: `--n` unit vectors of `--dim` (384, multilingual-e5-small's)
drawn around `n / 1000` random centres, so that neighbours exist as they do among real passages (uniform random
vectors in 384 dimensions have none worth finding, and every approximate index looks bad on them). The queries
are `--queries` further draws, not in the index. For each method it prints the build time, the median time of one
query asked alone (as a question is searched) and the time per query of one batch of them all, the memory the built
index holds (the growth of this process's resident memory; for sqlite-vec, the file's size, since SQLite pages it in
as it reads) and recall@k: the share of the brute-force top k that the method returns. A method whose package is not
installed is skipped with a line that says so.
"""

from __future__ import annotations

import argparse
import gc
import os
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil


def rss_mb() -> float:
    """This process's resident memory in MB."""
    return psutil.Process().memory_info().rss / 2**20


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def synthetic(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` clustered unit vectors and `queries` more from the same clusters."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((max(1, n // 1000), dim), dtype=np.float32))
    data = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # in slices: the noise of a million rows at once would double the memory
        stop = min(n, start + 100_000)
        near = centres[rng.integers(0, len(centres), stop - start)]
        data[start:stop] = unit(near + 0.08 * rng.standard_normal((stop - start, dim), dtype=np.float32))
    near = centres[rng.integers(0, len(centres), queries)]
    return data, unit(near + 0.08 * rng.standard_normal((queries, dim), dtype=np.float32))


def brute_force(data: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    """The ids of the k largest dot products, best first: what assistant/search/vectors.py's `Dense.top` does."""
    scores = data @ query
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best])]


@dataclass
class Result:
    name: str
    build_s: float
    memory_mb: float
    query_ms: float
    batch_ms: float
    recall: float
    note: str = ""


Search = Callable[[np.ndarray, int], np.ndarray]  # (queries, k) -> ids, one row per query


def measure(name: str, build: Callable[[], Search], queries: np.ndarray, truth: np.ndarray, k: int) -> Result:
    """Build with `build` (timed, its memory counted), then query one at a time and as one batch."""
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    search = build()
    build_s = time.perf_counter() - start
    memory = rss_mb() - before
    one = []
    found = np.empty_like(truth)
    for i, q in enumerate(queries):
        start = time.perf_counter()
        found[i] = search(q[None, :], k)[0]
        one.append(1000 * (time.perf_counter() - start))
    start = time.perf_counter()
    search(queries, k)
    batch_ms = 1000 * (time.perf_counter() - start) / len(queries)
    recall = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))
    return Result(name, build_s, memory, statistics.median(one), batch_ms, recall)


def methods(data: np.ndarray, threads: int, workdir: Path) -> dict[str, Callable[[], Search]]:
    """Each method's builder; the packages are imported when a method is built."""
    n, dim = data.shape

    def numpy_brute() -> Search:
        copy = data.copy()  # what a Dense holds in memory

        def search(qs: np.ndarray, k: int) -> np.ndarray:
            return np.stack([brute_force(copy, q, k) for q in qs])

        return search

    def faiss_hnsw() -> Search:
        import faiss

        faiss.omp_set_num_threads(threads)
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(data)
        index.hnsw.efSearch = 64
        return lambda qs, k: index.search(qs, k)[1]

    def faiss_ivf() -> Search:
        import faiss

        faiss.omp_set_num_threads(threads)
        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = data[np.random.default_rng(1).choice(n, min(n, 40 * nlist), replace=False)]
        index.train(sample)
        index.add(data)
        index.nprobe = 16
        return lambda qs, k: index.search(qs, k)[1]

    def usearch_hnsw(dtype: str) -> Callable[[], Search]:
        def build() -> Search:
            from usearch.index import Index

            index = Index(ndim=dim, metric="ip", dtype=dtype, connectivity=16, expansion_add=128, expansion_search=64)
            index.add(np.arange(n), data, threads=threads)

            def search(qs: np.ndarray, k: int) -> np.ndarray:
                found = index.search(qs, k, threads=threads)
                return np.asarray(found.keys).reshape(len(qs), k)

            return search

        return build

    def sqlite_vec() -> Search:
        import sqlite_vec

        path = workdir / "vec.db"
        con = sqlite3.connect(path)
        if not hasattr(con, "enable_load_extension"):
            # Python built without loadable SQLite extensions (pyenv's default, macOS's system Python): then only
            # pysqlite3 (`pip install pysqlite3-binary`) can load sqlite-vec, which is itself a finding.
            con.close()
            import pysqlite3  # type: ignore[import-not-found]

            con = pysqlite3.connect(str(path))
        con.enable_load_extension(True)
        sqlite_vec.load(con)
        con.enable_load_extension(False)
        con.execute(f"CREATE VIRTUAL TABLE v USING vec0(embedding float[{dim}] distance_metric=cosine)")
        with con:
            for start in range(0, n, 10_000):
                rows = [(i, data[i].tobytes()) for i in range(start, min(n, start + 10_000))]
                con.executemany("INSERT INTO v (rowid, embedding) VALUES (?, ?)", rows)
        sql = "SELECT rowid FROM v WHERE embedding MATCH ? AND k = ? ORDER BY distance"

        def search(qs: np.ndarray, k: int) -> np.ndarray:
            return np.array([[r for (r,) in con.execute(sql, (q.tobytes(), k))] for q in qs])

        return search

    return {
        "numpy brute force (today)": numpy_brute,
        "sqlite-vec 0.1 vec0 (exact, in the SQLite file)": sqlite_vec,
        "faiss HNSW32 flat (efSearch 64)": faiss_hnsw,
        "faiss IVF-flat (4 sqrt n lists, nprobe 16)": faiss_ivf,
        "usearch HNSW f32 (M 16, ef 64)": usearch_hnsw("f32"),
        "usearch HNSW i8 (M 16, ef 64)": usearch_hnsw("i8"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="vectors in the index")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="threads for building (queries use one, or this)")
    parser.add_argument("--only", help="comma-separated words: run only the methods whose name holds one")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    start = time.perf_counter()
    data, queries = synthetic(args.n, args.dim, args.queries)
    made = time.perf_counter() - start
    start = time.perf_counter()
    truth = np.stack([brute_force(data, q, args.k) for q in queries])
    print(
        f"{args.n:,} vectors of {args.dim} float32 ({data.nbytes / 2**20:,.0f} MB), {args.queries} queries, "
        f"k={args.k}, {args.threads} build threads; made in {made:.0f} s, brute-force truth in "
        f"{time.perf_counter() - start:.0f} s; {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    print("\n| method | build s | memory MB | query ms (one) | query ms (batch, each) | recall@10 |", flush=True)
    print("|---|---|---|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in methods(data, args.threads, Path(tmp)).items():
            if args.only and not any(w in name for w in args.only.split(",")):
                continue
            try:
                r = measure(name, build, queries, truth, args.k)
            except ImportError as e:
                print(f"| {name} | skipped: {e} | | | | |", flush=True)
                continue
            memory = r.memory_mb
            if name.startswith("sqlite-vec"):
                memory = (Path(tmp) / "vec.db").stat().st_size / 2**20
            print(
                f"| {name} | {r.build_s:.1f} | {memory:,.0f} | {r.query_ms:.2f} | {r.batch_ms:.2f} | {r.recall:.3f} |",
                flush=True,
            )
            gc.collect()


if __name__ == "__main__":
    main()
