"""The index's schema version: a file of the first layout (commit 59bde8f, no user_version) or of the second
(b8bf122, words as written) is refused with the command that fixes it, `assistant index migrate` upgrades it in
place (or leaves it untouched), and a file of a newer layout asks for an upgrade of the program."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.errors import AssistantError, SearchError
from assistant.search.local import SCHEMA_VERSION, LocalIndex, build_index, migrate_index
from assistant.settings import Settings

# build_index's schema at commit 59bde8f, verbatim: every record stored whole, no doc_id, user_version 0.
SCHEMA_0 = """
CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
                   text TEXT NOT NULL, url TEXT NOT NULL DEFAULT '');
CREATE VIRTUAL TABLE docs_fts USING fts5(title, text, content='docs', content_rowid='rowid',
                                         tokenize='unicode61 remove_diacritics 2');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def old_index(path: Path, jsonl: Path) -> Path:
    """An index as 59bde8f's build_index wrote it, of the records in `jsonl`."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA_0)
    with con:
        for line in jsonl.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            con.execute(
                "INSERT INTO docs (id, title, text, url) VALUES (?, ?, ?, '')", (r["id"], r["title"], r["text"])
            )
        con.execute("INSERT INTO docs_fts (rowid, title, text) SELECT rowid, title, text FROM docs")
        con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [("count", "2"), ("built_at", "2026")])
    con.close()
    return path


def rows(path: Path) -> list[tuple[str, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT * FROM docs ORDER BY rowid").fetchall()
    finally:
        con.close()


def test_a_new_index_carries_the_schema_version(tmp_path, long_document):
    build_index([long_document], tmp_path / "i.db")
    con = sqlite3.connect(tmp_path / "i.db")
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert LocalIndex(tmp_path / "i.db").meta()["documents"] == "2"


def test_an_old_index_is_refused_with_the_commands_that_fix_it(tmp_path, long_document):
    db = old_index(tmp_path / "old.db", long_document)
    with pytest.raises(AssistantError) as err:
        LocalIndex(db).search("Zanzibar")
    assert str(err.value) == (
        f"{db} is an index of an older layout (schema 0; this version reads 2) — upgrade it in place with "
        f"`assistant index migrate {db}`, or rebuild it with `assistant index build FILE.jsonl --out {db}`"
    )
    assert not isinstance(err.value, SearchError), "a SearchError would let a fallback chain hide it"
    assert err.value.exit_code == 2, "an index to upgrade is bad input"


def test_the_search_chain_refuses_an_old_index_before_any_question(tmp_path, long_document):
    from assistant.search import make_search

    db = old_index(tmp_path / "old.db", long_document)
    with pytest.raises(AssistantError, match="assistant index migrate"):
        make_search(Settings(search="local", index=db))


def test_migrate_splits_long_documents_and_keeps_short_records_as_they_were(tmp_path, long_document):
    db = old_index(tmp_path / "old.db", long_document)
    note_before = [r for r in rows(db) if r[1] == "note"]
    message = migrate_index(db)
    assert message == (
        f"{db}: migrated from index schema 0 to 2 (records split into passages: 1; passages indexed under stems: 0;"
        " passages now: 51)"
    )
    idx = LocalIndex(db)
    assert idx.count() == 51 and idx.meta()["count"] == "51"
    assert [r[:5] for r in rows(db) if r[1] == "note"] == note_before and rows(db)[0][5] == "note"
    results = idx.search("Zanzibar chronicle harbour", max_results=5)
    assert len(results) == 5 and all(r.id.startswith("chronicle#") and len(r.text.split()) <= 100 for r in results)
    # the FTS index follows: the old whole document is gone from it, and nothing is found twice
    assert len({r.id for r in idx.search("harbour", max_results=100)}) == 50
    assert idx.search("Moluccas")[0].id == "note"
    con = sqlite3.connect(db)
    con.execute("INSERT INTO docs_fts (docs_fts, rank) VALUES ('integrity-check', 1)")  # raises if out of step
    con.close()
    # the same passages a fresh build makes
    build_index([long_document], tmp_path / "new.db")
    fresh = LocalIndex(tmp_path / "new.db")
    assert [(r.id, r.text) for r in idx.search("harbour 17", 3)] == [
        (r.id, r.text) for r in fresh.search("harbour 17", 3)
    ]
    assert migrate_index(db) == f"{db} is already at index schema 2: nothing to do"


def test_a_failed_migration_leaves_the_file_untouched(tmp_path, long_document):
    db = old_index(tmp_path / "old.db", long_document)
    con = sqlite3.connect(db)
    with con:  # a record whose id is the one the first passage of "chronicle" would take
        con.execute("INSERT INTO docs (id, title, text) VALUES ('chronicle#0', 'Clash', 'a short passage')")
    con.close()
    before = db.read_bytes()
    with pytest.raises(AssistantError, match=r"could not migrate .*UNIQUE constraint failed.* it is unchanged"):
        migrate_index(db)
    assert db.read_bytes() == before
    with pytest.raises(AssistantError, match="schema 0"):
        LocalIndex(db).count()


def test_an_index_of_a_newer_version_asks_for_an_upgrade(tmp_path, long_document):
    db = tmp_path / "i.db"
    build_index([long_document], db)
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    for attempt in (LocalIndex(db).count, lambda: migrate_index(db)):
        with pytest.raises(
            AssistantError, match=r"built by a newer search-assistant \(index schema 3; this one reads 2\)"
        ):
            attempt()


def test_the_migrate_command(tmp_path, long_document):
    db = old_index(tmp_path / "old.db", long_document)
    runner = CliRunner()
    result = runner.invoke(app, ["index", "migrate", str(db)])
    assert result.exit_code == 0, result.output
    assert "migrated from index schema 0 to 2" in result.output
    result = runner.invoke(app, ["index", "migrate", str(tmp_path / "nope.db")])
    assert result.exit_code == 2, result.output
    assert "index not found" in result.output
