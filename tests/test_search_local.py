"""The SQLite FTS5 index: building (bad lines reported, atomic rebuild), ranking on real TriviaQA passages,
and queries that must never reach FTS5 as syntax."""

import json
from pathlib import Path

import pytest

from assistant.errors import AssistantError, BadInput, SearchError
from assistant.search.local import LocalIndex, build_index, fts_query, query_terms

DATA = Path(__file__).parent / "data"

# question id → the passage that answers it (chosen by hand; see tests/data/README.md)
EXPECTED = {
    "triviaqa-test_10503": "triviaqa-1650",  # Trent and Ouse → Trent Falls (the Humber)
    "triviaqa-test_8040": "triviaqa-2371",  # Mustang Sally → Wilson Pickett
    "triviaqa-test_3815": "triviaqa-1949",  # capital of Colombia → Bogotá
    "triviaqa-test_6178": "triviaqa-678",  # 'Le Douanier' → Henri Rousseau
}


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    out = tmp_path_factory.mktemp("index") / "index.db"
    report = build_index([DATA / "passages.jsonl"], out)
    assert report.problems == []
    idx = LocalIndex(out)
    yield idx
    idx.close()


def _questions():
    return [json.loads(line) for line in (DATA / "questions.jsonl").read_text(encoding="utf-8").splitlines()]


def test_build_counts_every_passage_and_records_meta(index):
    assert index.count() == 60
    meta = index.meta()
    assert json.loads(meta["sources"]) == [str((DATA / "passages.jsonl").resolve())]
    assert meta["built_at"][:2] == "20"
    assert meta["count"] == "60"


def test_get_returns_the_record_or_none(index):
    hit = index.get("triviaqa-1949")
    assert hit is not None
    # the source has '"Bogota\u0301"': the quotes are stripped and the accent composed (NFC)
    assert hit.title == "Bogot\u00e1"
    assert hit.text.startswith("Bogotá")
    assert index.get("no-such-id") is None


@pytest.mark.parametrize("question", _questions(), ids=lambda q: q["id"])
def test_the_answering_passage_ranks_first(index, question):
    results = index.search(question["question"], max_results=3)
    assert [r.id for r in results][:1] == [EXPECTED[question["id"]]]
    top = results[0].text.lower()
    assert any(a.lower() in top for a in question["answers"]), "the expected passage should hold an answer"


def test_results_carry_full_text_and_a_short_snippet(index):
    (r,) = index.search("Mustang Sally Wilson Pickett", max_results=1)
    stored = index.get(r.id)
    assert r.text == stored.text and len(r.text) > 300
    assert len(r.snippet) <= 201 and r.snippet.endswith("…")
    assert r.text.startswith(r.snippet[:-1])
    assert (r.url, r.backend) == ("", "local")


def test_max_results_is_respected(index):
    assert len(index.search("river", max_results=2)) == 2
    assert len(index.search("river", max_results=7)) == 7


def test_stop_words_are_dropped_unless_nothing_else_is_left():
    assert query_terms("Who painted The Night Watch?") == ["painted", "night", "watch"]
    assert query_terms("The Who") == ["the", "who"]
    assert query_terms("night night NIGHT") == ["night"]
    assert fts_query("who painted the night watch") == '"painted" OR "night" OR "watch"'


def test_a_passage_matching_only_stop_words_is_not_returned(tmp_path):
    src = tmp_path / "p.jsonl"
    rows = [
        {"id": "glue", "title": "Glue", "text": "who was the one who did the thing of the other"},
        {"id": "art", "title": "The Night Watch", "text": "Rembrandt painted The Night Watch in 1642."},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index([src], tmp_path / "i.db")
    assert [r.id for r in LocalIndex(tmp_path / "i.db").search("who painted the night watch")] == ["art"]


def test_a_text_repeated_under_another_id_counts_once_and_the_next_passage_takes_its_place(tmp_path):
    # TyDi QA repeats a paragraph under a new id for each of its questions
    src = tmp_path / "p.jsonl"
    watch = "Rembrandt painted The Night Watch in 1642."
    rows = [
        {"id": "q1", "title": "The Night Watch", "text": watch},
        {"id": "q2", "title": "The Night Watch", "text": "  " + watch.replace(" ", "  ")},  # spacing aside
        {"id": "q3", "title": "Rembrandt", "text": "Rembrandt van Rijn painted The Night Watch, his largest work."},
    ]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index([src], tmp_path / "i.db")
    found = LocalIndex(tmp_path / "i.db").search("who painted the night watch", max_results=2)
    assert sorted(r.id for r in found) == ["q1", "q3"] or sorted(r.id for r in found) == ["q2", "q3"], found


def test_repeats_that_fill_the_first_ranks_leave_room_for_as_many_texts_as_were_asked_for(tmp_path):
    src = tmp_path / "p.jsonl"
    watch = "Rembrandt painted The Night Watch in 1642 in Amsterdam."
    militia = "The Night Watch shows the militia company of Frans Banninck Cocq, painted by Rembrandt."
    rows = [{"id": f"w{i}", "title": "The Night Watch", "text": watch} for i in range(6)]
    rows += [{"id": f"m{i}", "title": "The Night Watch", "text": militia} for i in range(6)]
    museum = "The Rijksmuseum in Amsterdam shows a painting by night."
    rows.append({"id": "rijks", "title": "Rijksmuseum", "text": museum})
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    build_index([src], tmp_path / "i.db")
    found = LocalIndex(tmp_path / "i.db").search("who painted the night watch", max_results=3)
    assert sorted(r.text for r in found) == sorted([watch, militia, museum]), found


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced quote',
        "NEAR(Trent Ouse, 2)",
        "Trent AND",
        "AND OR NOT",
        "*",
        "Humber*",
        "(((",
        "title:Humber",
        "^Trent",
        "Trent - Ouse + {x}",
        "'; DROP TABLE docs; --",
        '"""',
    ],
)
def test_fts5_syntax_in_user_text_never_crashes(index, query):
    results = index.search(query)
    assert isinstance(results, list)
    assert index.count() == 60


def test_syntax_characters_are_searched_as_words(index):
    results = index.search('"Mustang" NEAR(Sally* AND (Pickett')
    assert results[0].id == "triviaqa-2371"


def test_a_query_of_punctuation_only_finds_nothing(index):
    assert index.search("?!* ()") == []
    assert index.search("") == []


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Bogotá", "triviaqa-1949"),
        ("bogota", "triviaqa-1949"),  # diacritics are folded both ways
        ("BOGOTÁ", "triviaqa-1949"),
        ("Törökszentmiklós", "triviaqa-1831"),
        ("Sèvres porcelain", "wiki-75"),
        ("כוש", "wiki-920"),
    ],
)
def test_non_ascii_queries(index, query, expected):
    assert index.search(query)[0].id == expected


def _write_lines(path: Path, lines: list[str | bytes]) -> Path:
    data = [line if isinstance(line, bytes) else line.encode("utf-8") for line in lines]
    path.write_bytes(b"\n".join(data) + b"\n")
    return path


def test_malformed_lines_are_reported_with_line_numbers_and_good_ones_kept(tmp_path):
    src = _write_lines(
        tmp_path / "mixed.jsonl",
        [
            '{"id": "a", "title": "Alpha", "text": "first passage", "url": "https://example.org/a"}',
            '{"id": "b", "title": ',
            '{"title": "no id", "text": "y"}',
            "",
            "[1, 2]",
            '{"id": "c", "title": "no text"}',
            '{"id": "a", "title": "Duplicate", "text": "second a"}',
            json.dumps({"id": 9, "contents": '"Flash Title"\nflash body text'}),
            b'{"id": "latin1", "title": "Caf\xe9", "text": "not UTF-8"}',
        ],
    )
    report = build_index([src], tmp_path / "i.db")
    assert report.count == int(report) == 2
    assert [p.split(": ")[0] for p in report.problems] == [f"{src}:{n}" for n in (2, 3, 5, 6, 7, 9)]
    assert "not valid JSON" in report.problems[0]
    assert "missing 'id'" in report.problems[1]
    assert "duplicate id 'a'" in report.problems[4]
    assert "not valid UTF-8 (byte 31)" in report.problems[5]
    assert str(report).startswith(f"2 passages indexed, 6 lines skipped: {src}:2: not valid JSON")
    assert str(report).endswith("; and 1 more")
    idx = LocalIndex(tmp_path / "i.db")
    assert idx.get("a").title == "Alpha" and idx.get("a").url == "https://example.org/a"
    flash = idx.get("9")
    assert (flash.title, flash.text) == ("Flash Title", "flash body text")
    assert idx.search("alpha")[0].url == "https://example.org/a"


def test_rebuild_replaces_the_old_index_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "i.db"
    a = _write_lines(tmp_path / "a.jsonl", ['{"id": "1", "title": "One", "text": "apples"}'])
    b = _write_lines(tmp_path / "b.jsonl", ['{"id": "2", "title": "Two", "text": "pears"}'] * 1)
    build_index([a], out)
    build_index([b], out)
    idx = LocalIndex(out)
    assert idx.count() == 1 and idx.get("1") is None
    assert idx.search("apples") == [] and idx.search("pears")[0].id == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "i.db"]


def test_a_build_with_no_good_lines_fails_and_keeps_the_old_index(tmp_path):
    out = tmp_path / "i.db"
    build_index([_write_lines(tmp_path / "ok.jsonl", ['{"id": "1", "title": "One", "text": "apples"}'])], out)
    bad = _write_lines(tmp_path / "bad.jsonl", ["not json", '{"id": "x"}'])
    with pytest.raises(AssistantError, match=r"no passages to index .*bad.jsonl:1: not valid JSON"):
        build_index([bad], out)
    assert LocalIndex(out).get("1") is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_a_missing_passages_file_is_a_clear_error(tmp_path):
    with pytest.raises(AssistantError, match="passages file not found: .*nope.jsonl"):
        build_index([tmp_path / "nope.jsonl"], tmp_path / "i.db")
    assert not (tmp_path / "i.db").exists()


def test_a_missing_index_says_how_to_build_one(tmp_path):
    missing = tmp_path / "nope.db"
    with pytest.raises(SearchError) as err:
        LocalIndex(missing).search("anything")
    assert str(err.value) == (
        f"index not found: {missing} — build one with `assistant index build FILE.jsonl --out {missing}`"
    )


def test_a_file_that_is_not_an_index_is_a_search_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SearchError, match="not a search index"):
        LocalIndex(junk).count()


def test_a_long_document_is_indexed_as_passages_that_keep_its_id_and_title(tmp_path, long_document):
    build_index([long_document], tmp_path / "i.db")
    idx = LocalIndex(tmp_path / "i.db")
    results = idx.search("Zanzibar chronicle harbour", max_results=5)
    assert len(results) == 5
    for r in results:
        assert r.id.startswith("chronicle#") and r.title == "Zanzibar Chronicle"
        assert 0 < len(r.text.split()) <= 100, r.id
    assert idx.get("chronicle#0").text.startswith("Harbour 0 of the Zanzibar chronicle")
    # a record that is already passage-sized is stored as it came: same id, same text, spaces and all
    assert idx.get("note").text == "Cloves   came to  Zanzibar\nfrom the Moluccas."


def test_passage_sized_records_are_stored_unchanged(index):
    """The evaluation indexes hold ~100-word passages: chunking must leave every id and text as it was."""
    import unicodedata

    for line in (DATA / "passages.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        assert index.get(rec["id"]).text == unicodedata.normalize("NFC", rec["text"])


def test_an_index_is_never_built_over_its_own_passages_file(tmp_path):
    src = tmp_path / "p.jsonl"
    src.write_text(json.dumps({"id": "a", "title": "t", "text": "some text"}) + "\n")
    with pytest.raises(BadInput, match="would replace its own passages file"):
        build_index([src], tmp_path / "." / "p.jsonl")
    assert src.read_text().startswith('{"id": "a"'), "the passages are untouched"
