"""A local search index: SQLite FTS5 ranked by BM25 over JSON Lines passages, so search works offline.

Build one from `{id, title, text, url?}` records (or FlashRAG's `{id, contents}`, title on the first line):

    PYTHONPATH=. python -c "from pathlib import Path; from assistant.search.local import build_index; \
        print(build_index([Path('passages.jsonl')], Path('index.db')))"

then `LocalIndex(Path('index.db')).search('who painted the night watch')`. User text never reaches FTS5 as
syntax: it is split into words, stop words dropped, each word quoted, and the words OR-ed.

A record that is already passage-sized is stored as it came; a longer document is split into ~100-word passages
`ID#0`, `ID#1`, … that keep its title, url and, in `doc_id`, its id. The file carries its layout's number
(`PRAGMA user_version`, `SCHEMA_VERSION`): an older file is refused with the command that upgrades it
(`assistant index migrate INDEX.db`, i.e. `migrate_index`), a newer one with a request to upgrade the program.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import tempfile
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import AssistantError, BadInput, SearchError
from assistant.passages import WHOLE_PASSAGE_WORDS, document_passages
from assistant.search.base import SearchResult

SNIPPET_CHARS = 200

# Small on purpose: question words and glue. Content words like "first" or "name" stay searchable.
_STOP = """a about an and are as at be been but by can could did do does for from had has have he her his
    how i in into is it its me my near not of on or our she so than that the their them then there these they
    this those to was we were what when where which who whom whose why will with would you your s t"""
STOP_WORDS = frozenset(_STOP.split())

# Schema 0 (no user_version) stored each record whole; 1 splits long documents into passages with a doc_id.
SCHEMA_VERSION = 1
_SCHEMA = f"""
PRAGMA user_version = {SCHEMA_VERSION};
CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, title TEXT NOT NULL,
                   text TEXT NOT NULL, url TEXT NOT NULL DEFAULT '');
CREATE INDEX docs_doc_id ON docs (doc_id);
CREATE VIRTUAL TABLE docs_fts USING fts5(title, text, content='docs', content_rowid='rowid',
                                         tokenize='unicode61 remove_diacritics 2');
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass
class BuildReport:
    """What `build_index` did: passages written (from how many documents), and one `file:line: problem` string
    per skipped line."""

    out: Path
    count: int
    problems: list[str] = field(default_factory=list)
    documents: int = 0

    def __int__(self) -> int:
        return self.count

    def __str__(self) -> str:
        done = f"{self.count} passages indexed"
        if self.documents and self.documents != self.count:
            done += f" from {self.documents} documents"
        if not self.problems:
            return done
        shown = "; ".join(self.problems[:5])
        more = f"; and {len(self.problems) - 5} more" if len(self.problems) > 5 else ""
        return f"{done}, {len(self.problems)} lines skipped: {shown}{more}"


def _record(raw: str) -> tuple[str, str, str, str]:
    """(id, title, text, url) from one JSON line; ValueError says what is wrong with it."""
    try:
        rec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    if rec.get("id") in (None, ""):
        raise ValueError("missing 'id'")
    title, text = rec.get("title"), rec.get("text")
    if text is None and isinstance(rec.get("contents"), str):
        # FlashRAG: the title on the first line, then the passage.
        first, _, rest = rec["contents"].partition("\n")
        text, title = rest, first if title is None else title
    if not isinstance(text, str) or not text.strip():
        raise ValueError("missing 'text' (or FlashRAG 'contents')")
    title = str(title or "").strip()
    if len(title) >= 2 and title[0] == title[-1] == '"' and '"' not in title[1:-1]:
        title = title[1:-1]  # Wikipedia dumps prepared by DPR/FlashRAG quote every title
    # DPR-era Wikipedia dumps mix decomposed accents in; NFC keeps display and substring checks consistent.
    nfc = unicodedata.normalize
    return str(rec["id"]), nfc("NFC", title), nfc("NFC", text), str(rec.get("url") or "")


def _records(paths: list[Path], problems: list[str]) -> Iterator[tuple[str, str, str, str, str]]:
    """("file:line", id, title, text, url) for each good line; each bad line is appended to `problems`."""
    for p in paths:
        with open(p, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.strip():
                    continue
                try:
                    record = _record(raw.decode("utf-8"))
                except UnicodeDecodeError as e:
                    problems.append(f"{p}:{lineno}: not valid UTF-8 (byte {e.start + 1})")
                    continue
                except ValueError as e:
                    problems.append(f"{p}:{lineno}: {e}")
                    continue
                yield (f"{p}:{lineno}", *record)


def _passage_rows(rid: str, title: str, text: str, url: str) -> list[tuple[str, str, str, str, str]]:
    """(id, doc_id, title, text, url) rows of one document: itself if passage-sized, else `rid#0`, `rid#1`, …"""
    pieces = document_passages(text)
    if len(pieces) == 1:
        return [(rid, rid, title, pieces[0], url)]
    return [(f"{rid}#{k}", rid, title, piece, url) for k, piece in enumerate(pieces)]


def build_index(paths: list[Path], out: Path) -> BuildReport:
    """Index JSONL passages into a new SQLite file at `out`, replacing any old one; bad lines are reported."""
    for p in paths:
        if not Path(p).is_file():
            raise BadInput(f"passages file not found: {p} — give a JSON Lines file of {{id, title, text}}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    problems: list[str] = []
    count = documents = 0
    try:
        con = sqlite3.connect(tmp)
        try:
            con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
            with con:
                for where, rid, title, text, url in _records(paths, problems):
                    if con.execute("SELECT 1 FROM docs WHERE doc_id = ? OR id = ?", (rid, rid)).fetchone():
                        problems.append(f"{where}: duplicate id {rid!r} (kept the first)")
                        continue
                    documents += 1
                    for row in _passage_rows(rid, title, text, url):
                        cur = con.execute(
                            "INSERT OR IGNORE INTO docs (id, doc_id, title, text, url) VALUES (?, ?, ?, ?, ?)", row
                        )
                        if cur.rowcount == 0:
                            problems.append(f"{where}: passage id {row[0]!r} is taken by an earlier record (kept it)")
                        count += cur.rowcount
                if count == 0:
                    shown = "; ".join(problems[:3]) or "the files are empty"
                    raise BadInput(f"no passages to index in {', '.join(map(str, paths))}: {shown}")
                con.execute("INSERT INTO docs_fts (rowid, title, text) SELECT rowid, title, text FROM docs")
                con.execute("INSERT INTO docs_fts (docs_fts) VALUES ('optimize')")
                meta = {
                    "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "sources": json.dumps([str(Path(p).resolve()) for p in paths]),
                    "count": str(count),
                    "documents": str(documents),
                }
                con.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        finally:
            con.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return BuildReport(out=out, count=count, problems=problems, documents=documents)


def _schema_version(con: sqlite3.Connection, path: Path) -> int:
    """The index layout `con` holds (`PRAGMA user_version`); SearchError if it is not a search index at all."""
    try:
        con.execute("SELECT 1 FROM docs_fts LIMIT 1").fetchall()
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as e:
        raise SearchError(
            f"not a search index: {path} ({e}) — rebuild it with `assistant index build FILE.jsonl --out {path}`"
        ) from None


def _version_problem(path: Path, version: int) -> str:
    rebuild = f"`assistant index build FILE.jsonl --out {path}`"
    if version > SCHEMA_VERSION:
        return (
            f"{path} was built by a newer search-assistant (index schema {version}; this one reads {SCHEMA_VERSION})"
            f" — upgrade with `pip install -U search-assistant`, or rebuild it with {rebuild}"
        )
    return (
        f"{path} is an index of an older layout (schema {version}; this version reads {SCHEMA_VERSION}) — "
        f"upgrade it in place with `assistant index migrate {path}`, or rebuild it with {rebuild}"
    )


def _split_documents(con: sqlite3.Connection) -> int:
    """Schema 0 → 1: add `doc_id`, and split each record longer than a passage into passages; how many were."""
    con.execute("ALTER TABLE docs ADD COLUMN doc_id TEXT NOT NULL DEFAULT ''")
    con.execute("UPDATE docs SET doc_id = id")
    con.execute("CREATE INDEX docs_doc_id ON docs (doc_id)")
    last = con.execute("SELECT coalesce(max(rowid), 0) FROM docs").fetchone()[0]
    split = done = 0
    # Rows come in batches by rowid; a text of 2W characters or fewer cannot hold more than W words.
    sql = "SELECT rowid, id, title, text, url FROM docs WHERE rowid > ? AND rowid <= ? AND length(text) > ? "
    while batch := con.execute(sql + "ORDER BY rowid LIMIT 1000", (done, last, 2 * WHOLE_PASSAGE_WORDS)).fetchall():
        done = batch[-1][0]
        for rowid, rid, title, text, url in batch:
            rows = _passage_rows(rid, title, text, url)
            if len(rows) == 1:
                continue
            con.execute(
                "INSERT INTO docs_fts (docs_fts, rowid, title, text) VALUES ('delete', ?, ?, ?)", (rowid, title, text)
            )
            con.execute("DELETE FROM docs WHERE rowid = ?", (rowid,))
            for row in rows:
                cur = con.execute("INSERT INTO docs (id, doc_id, title, text, url) VALUES (?, ?, ?, ?, ?)", row)
                con.execute(
                    "INSERT INTO docs_fts (rowid, title, text) VALUES (?, ?, ?)", (cur.lastrowid, row[2], row[3])
                )
            split += 1
    return split


_MIGRATIONS = {0: _split_documents}  # schema N → N+1; each runs inside migrate_index's one transaction


def migrate_index(path: Path) -> str:
    """Upgrade an index of an older schema to `SCHEMA_VERSION` in place, in one transaction: all or nothing."""
    path = Path(path).expanduser()
    rebuild = f"`assistant index build FILE.jsonl --out {path}`"
    if not path.is_file():
        raise BadInput(f"index not found: {path} — build one with {rebuild}")
    con = sqlite3.connect(path, isolation_level=None)  # transactions by hand: DDL must not commit on its own
    try:
        version = _schema_version(con, path)
        if version == SCHEMA_VERSION:
            return f"{path} is already at index schema {SCHEMA_VERSION}: nothing to do"
        if version > SCHEMA_VERSION:
            raise BadInput(_version_problem(path, version))
        try:
            con.execute("BEGIN IMMEDIATE")
            split = sum(_MIGRATIONS[v](con) for v in range(version, SCHEMA_VERSION))
            count = con.execute("SELECT count(*) FROM docs").fetchone()[0]
            meta = {"count": str(count), "migrated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            con.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", meta.items())
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException as e:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise AssistantError(
                    f"could not migrate {path}: {e} — it is unchanged; rebuild it with {rebuild}"
                ) from None
            raise
    finally:
        con.close()
    return (
        f"{path}: migrated from index schema {version} to {SCHEMA_VERSION} "
        f"(records split into passages: {split}; passages now: {count})"
    )


def query_terms(query: str) -> list[str]:
    """The words of `query` that are searched for: lower-cased, de-duplicated, stop words dropped."""
    words = list(dict.fromkeys(re.findall(r"\w+", query.lower())))
    content = [w for w in words if w not in STOP_WORDS]
    return content or words  # a query of only stop words ("The Who") still searches for something


def fts_query(query: str) -> str:
    """An FTS5 MATCH expression that cannot be a syntax error: each term quoted, OR-ed together."""
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in query_terms(query))


def _snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut + "…"


class IndexMissing(BadInput, SearchError):
    """The index file is not there: bad input for `index search` (exit 2), a failure a search chain falls back from."""


class LocalIndex:
    """Searches an index made by `build_index`; `title_weight` scales title matches against text matches."""

    name = "local"
    cacheable = False  # as fast as the cache, and a rebuilt index must not serve stale hits

    def __init__(self, path: Path, title_weight: float = 2.0):
        self.path = Path(path).expanduser()
        self.title_weight = title_weight
        self._con: sqlite3.Connection | None = None

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            if not self.path.is_file():
                raise IndexMissing(
                    f"index not found: {self.path} — build one with "
                    f"`assistant index build FILE.jsonl --out {self.path}`"
                )
            con = sqlite3.connect(self.path.resolve().as_uri() + "?mode=ro", uri=True, check_same_thread=False)
            try:
                version = _schema_version(con, self.path)
            except SearchError:
                con.close()
                raise
            if version != SCHEMA_VERSION:
                con.close()
                # Not a SearchError: no fallback backend should hide an index that needs the user's hand.
                raise BadInput(_version_problem(self.path, version))
            self._con = con
        return self._con

    def check(self) -> None:
        """Open the index now, so a missing, foreign or outdated file fails before a run rather than in it."""
        self._db()

    def _result(self, row: tuple[str, str, str, str]) -> SearchResult:
        rid, title, text, url = row
        return SearchResult(id=rid, title=title, url=url, snippet=_snippet(text), text=text, backend=self.name)

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """Up to `max_results` passages for `query`, best BM25 score first."""
        match = fts_query(query)
        if not match:
            return []
        sql = (
            "SELECT d.id, d.title, d.text, d.url FROM docs_fts JOIN docs d ON d.rowid = docs_fts.rowid "
            "WHERE docs_fts MATCH ? ORDER BY bm25(docs_fts, ?, 1.0) LIMIT ?"
        )
        try:
            rows = self._db().execute(sql, (match, self.title_weight, max_results)).fetchall()
        except sqlite3.Error as e:
            raise SearchError(f"local index query failed: {e} — rebuild {self.path} if this repeats") from None
        return [self._result(r) for r in rows]

    def get(self, id: str) -> SearchResult | None:
        """The passage with this id, or None."""
        row = self._db().execute("SELECT id, title, text, url FROM docs WHERE id = ?", (id,)).fetchone()
        return self._result(row) if row else None

    def count(self) -> int:
        """How many passages the index holds."""
        return self._db().execute("SELECT count(*) FROM docs").fetchone()[0]

    def meta(self) -> dict[str, str]:
        """What the index was built from and when: built_at, sources (a JSON list), count."""
        return dict(self._db().execute("SELECT key, value FROM meta").fetchall())

    def close(self) -> None:
        """Release the database connection."""
        if self._con is not None:
            self._con.close()
            self._con = None
