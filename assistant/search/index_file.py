"""The index file: its layout (SCHEMA_VERSION), building it from JSON Lines, upgrading it, adding vectors to it.

    PYTHONPATH=. python -c "from pathlib import Path; from assistant.search.index_file import build_index; \
        print(build_index([Path('passages.jsonl')], Path('index.db')))"

Records are `{id, title, text, url?}` (or FlashRAG's `{id, contents}`, title on the first line). A record that is
already passage-sized is stored as it came; a longer document is split into ~100-word passages `ID#0`, `ID#1`, …
that keep its title, url and, in `doc_id`, its id. The file carries its layout's number (`PRAGMA user_version`,
`SCHEMA_VERSION`): an older file is refused with the command that upgrades it (`assistant index migrate INDEX.db`,
i.e. `migrate_index`), a newer one with a request to upgrade the program. `embed_index` (`assistant index embed`)
adds the optional `vectors` table (assistant/search/vectors.py), which needs no new schema number: a reader that
predates it ignores it. assistant/search/local.py searches the file.

The FTS table holds each passage under its index terms (assistant/analysis.py): character n-grams of scripts
written without spaces, Snowball stems of the languages that have a stemmer in assistant/languages.py, other words
as they are. Each passage's language is detected as it is indexed and kept in `docs.lang`; meta `stemmers` lists
the stemmers the index used (JSON, null for words left as they are), which its queries must use too.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from assistant.analysis import index_text, passage_stemmer
from assistant.errors import AssistantError, BadInput, SearchError
from assistant.passages import WHOLE_PASSAGE_WORDS, document_passages
from assistant.search import ann
from assistant.search.embed import Embedder
from assistant.search.vectors import EmbedReport, embed_vectors, stored_embedder

# Schema 0 (no user_version) stored each record whole; 1 splits long documents into passages with a doc_id; 2
# indexes each passage under its terms (assistant/analysis.py) in a contentless FTS table, and records its language.
SCHEMA_VERSION = 2
_FTS = (
    """CREATE VIRTUAL TABLE docs_fts USING fts5(title, text, content='', tokenize='unicode61 remove_diacritics 2');"""
)
_SCHEMA = f"""
PRAGMA user_version = {SCHEMA_VERSION};
CREATE TABLE docs (rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc_id TEXT NOT NULL, title TEXT NOT NULL,
                   text TEXT NOT NULL, url TEXT NOT NULL DEFAULT '', lang TEXT NOT NULL DEFAULT '');
CREATE INDEX docs_doc_id ON docs (doc_id);
{_FTS}
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


def _insert(con: sqlite3.Connection, paths: list[Path], problems: list[str]) -> tuple[int, int]:
    """Insert the records of `paths` into `docs` and, under their terms, into the FTS table: (passages,
    documents) written. A record whose id the index already holds is skipped and reported in `problems`, never
    dropped silently."""
    count = documents = 0
    stemmers = set(_stemmers(con))
    for where, rid, title, text, url in _records(paths, problems):
        if con.execute("SELECT 1 FROM docs WHERE doc_id = ? OR id = ?", (rid, rid)).fetchone():
            problems.append(f"{where}: duplicate id {rid!r} (kept the first)")
            continue
        documents += 1
        for row in _passage_rows(rid, title, text, url):
            lang, stemmer = passage_stemmer(row[3])
            sql = "INSERT OR IGNORE INTO docs (id, doc_id, title, text, url, lang) VALUES (?, ?, ?, ?, ?, ?)"
            cur = con.execute(sql, (*row, lang))
            if cur.rowcount == 0:
                problems.append(f"{where}: passage id {row[0]!r} is taken by an earlier record (kept it)")
                continue
            _index_passage(con, cur.lastrowid, row[2], row[3], stemmer)
            stemmers.add(stemmer)
            count += 1
    _set_stemmers(con, stemmers)
    return count, documents


def _index_passage(con: sqlite3.Connection, rowid: int | None, title: str, text: str, stemmer: str | None) -> None:
    """Put one passage into the FTS table under its index terms."""
    sql = "INSERT INTO docs_fts (rowid, title, text) VALUES (?, ?, ?)"
    con.execute(sql, (rowid, index_text(title, stemmer), index_text(text, stemmer)))


def _stemmers(con: sqlite3.Connection) -> list[str | None]:
    """The stemmers the index's passages were indexed with (meta `stemmers`; none yet: [])."""
    row = con.execute("SELECT value FROM meta WHERE key = 'stemmers'").fetchone()
    return list(json.loads(row[0])) if row else []


def _set_stemmers(con: sqlite3.Connection, stemmers: set[str | None]) -> None:
    value = json.dumps(sorted(stemmers, key=lambda s: s or ""))
    con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('stemmers', ?)", (value,))


def index_stemmers(con: sqlite3.Connection) -> list[str | None]:
    """The stemmers a query of this index must be processed with (None: words as they are); an index that holds
    no passage yet: words as they are."""
    return _stemmers(con) or [None]


def _languages(con: sqlite3.Connection) -> dict[str, int]:
    """Passages per detected language ("" when detection was unsure), most first."""
    rows = con.execute("SELECT lang, COUNT(*) AS n FROM docs GROUP BY lang ORDER BY n DESC, lang").fetchall()
    return {lang: n for lang, n in rows}


def _check_files(paths: list[Path]) -> None:
    for p in paths:
        if not Path(p).is_file():
            raise BadInput(f"passages file not found: {p} — give a JSON Lines file of {{id, title, text}}")


def build_index(paths: list[Path], out: Path) -> BuildReport:
    """Index JSONL passages into a new SQLite file at `out`, replacing any old one; bad lines are reported."""
    _check_files(paths)
    out = Path(out)
    if any(out.resolve() == p.resolve() for p in paths):
        raise BadInput(f"the index would replace its own passages file {out} — pass another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    problems: list[str] = []
    try:
        con = sqlite3.connect(tmp)
        try:
            con.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + _SCHEMA)
            with con:
                count, documents = _insert(con, paths, problems)
                if count == 0:
                    shown = "; ".join(problems[:3]) or "the files are empty"
                    raise BadInput(f"no passages to index in {', '.join(map(str, paths))}: {shown}")
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


def add_records(paths: list[Path], index: Path) -> BuildReport:
    """Add the records of `paths` to the existing index at `index`, in one transaction (all or nothing): new
    passages are searchable by BM25 at once; ids it already holds are reported as problems and skipped. Vectors
    for the new passages are `embed_index`'s job (it embeds what lacks one)."""
    _check_files(paths)
    con = _open_current(index)
    problems: list[str] = []
    try:
        with con:
            count, documents = _insert(con, paths, problems)
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
            sources = json.loads(meta.get("sources", "[]")) + [str(Path(p).resolve()) for p in paths]
            total = con.execute("SELECT COUNT(*), COUNT(DISTINCT doc_id) FROM docs").fetchone()
            update = {
                "sources": json.dumps(sources),
                "count": str(total[0]),
                "documents": str(total[1]),
                "added_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            con.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", update.items())
    finally:
        con.close()
    return BuildReport(out=Path(index), count=count, problems=problems, documents=documents)


def index_info(index: Path) -> dict[str, object]:
    """What `assistant index info` shows: counts, size, schema version, vectors and what the index was built from."""
    con = _open_current(index)
    try:
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        passages, documents = con.execute("SELECT COUNT(*), COUNT(DISTINCT doc_id) FROM docs").fetchone()
        embedder, dim = stored_embedder(con)
        has_vectors = con.execute("SELECT 1 FROM sqlite_master WHERE name = 'vectors'").fetchone()
        vectors = con.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] if has_vectors else 0
        languages = _languages(con)
        record, stale = ann.stored(con), ann.staleness(con)
    finally:
        con.close()
    path = Path(index).expanduser()
    approximate = None
    if record is not None:
        built = f"{record.get('kind')}, {record.get('lists')} lists, over {record.get('count')} vectors"
        approximate = f"{built} (stale: rebuild with `assistant index ann`)" if stale else built
    return {
        "path": str(path.resolve()),
        "size_bytes": path.stat().st_size,
        "schema_version": SCHEMA_VERSION,
        "passages": passages,
        "documents": documents,
        "vectors": vectors,
        "embedder": embedder,
        "dim": dim,
        "ann": approximate,
        "built_at": meta.get("built_at"),
        "added_at": meta.get("added_at"),
        "migrated_at": meta.get("migrated_at"),
        "sources": json.loads(meta.get("sources", "[]")),
        "languages": languages,
        "stemmers": json.loads(meta.get("stemmers", "[]")),
    }


@contextlib.contextmanager
def open_index(index: Path) -> Iterator[sqlite3.Connection]:
    """An existing index of this program's layout, open for writing, closed after the block."""
    con = _open_current(index)
    try:
        yield con
    finally:
        con.close()


def _open_current(index: Path) -> sqlite3.Connection:
    """A connection to an existing index of this program's layout; a clear error for anything else."""
    path = Path(index).expanduser()
    if not path.is_file():
        raise BadInput(f"index not found: {path} — build one with `assistant index build FILE.jsonl --out {path}`")
    con = sqlite3.connect(path, timeout=30)
    try:
        version = schema_version(con, path)
    except BaseException:
        con.close()
        raise
    if version != SCHEMA_VERSION:
        con.close()
        raise BadInput(version_problem(path, version))
    return con


class IndexUnusable(BadInput, SearchError):
    """The index file is missing or is not a search index: bad input (exit 2), and a failure a search chain falls
    back from."""


def schema_version(con: sqlite3.Connection, path: Path) -> int:
    """The index layout `con` holds (`PRAGMA user_version`); IndexUnusable if it is not a search index at all."""
    try:
        con.execute("SELECT 1 FROM docs_fts LIMIT 1").fetchall()
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError as e:
        raise IndexUnusable(
            f"not a search index: {path} ({e}) — rebuild it with `assistant index build FILE.jsonl --out {path}`"
        ) from None


def version_problem(path: Path, version: int) -> str:
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


def _index_terms(con: sqlite3.Connection) -> int:
    """Schema 1 → 2: detect each passage's language into `docs.lang`, and rebuild the FTS table under the
    passages' index terms (assistant/analysis.py); how many passages were stemmed."""
    con.execute("ALTER TABLE docs ADD COLUMN lang TEXT NOT NULL DEFAULT ''")
    con.execute("DROP TABLE docs_fts")
    con.execute(_FTS)
    stemmers: set[str | None] = set()
    stemmed = done = 0
    sql = "SELECT rowid, title, text FROM docs WHERE rowid > ? ORDER BY rowid LIMIT 1000"
    while batch := con.execute(sql, (done,)).fetchall():
        done = batch[-1][0]
        for rowid, title, text in batch:
            lang, stemmer = passage_stemmer(text)
            con.execute("UPDATE docs SET lang = ? WHERE rowid = ?", (lang, rowid))
            _index_passage(con, rowid, title, text, stemmer)
            stemmers.add(stemmer)
            stemmed += stemmer is not None
    _set_stemmers(con, stemmers)
    con.execute("INSERT INTO docs_fts (docs_fts) VALUES ('optimize')")
    return stemmed


# schema N → N+1, each with what its message says it changed; each runs inside migrate_index's one transaction
_MIGRATIONS: dict[int, tuple[str, Callable[[sqlite3.Connection], int]]] = {
    0: ("records split into passages", _split_documents),
    1: ("passages indexed under stems", _index_terms),
}


def migrate_index(path: Path) -> str:
    """Upgrade an index of an older schema to `SCHEMA_VERSION` in place, in one transaction: all or nothing."""
    path = Path(path).expanduser()
    rebuild = f"`assistant index build FILE.jsonl --out {path}`"
    if not path.is_file():
        raise BadInput(f"index not found: {path} — build one with {rebuild}")
    con = sqlite3.connect(path, isolation_level=None)  # transactions by hand: DDL must not commit on its own
    try:
        version = schema_version(con, path)
        if version == SCHEMA_VERSION:
            return f"{path} is already at index schema {SCHEMA_VERSION}: nothing to do"
        if version > SCHEMA_VERSION:
            raise BadInput(version_problem(path, version))
        try:
            con.execute("BEGIN IMMEDIATE")
            done = [(_MIGRATIONS[v][0], _MIGRATIONS[v][1](con)) for v in range(version, SCHEMA_VERSION)]
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
    changes = "; ".join(f"{what}: {n}" for what, n in done)
    return f"{path}: migrated from index schema {version} to {SCHEMA_VERSION} ({changes}; passages now: {count})"


def embed_index(
    path: Path,
    embedder: Embedder,
    progress: Callable[[int, int], None] | None = None,
    redo: bool = False,
    threads: int | None = None,
) -> EmbedReport:
    """Add `embedder`'s vectors to the passages of the index at `path` that lack one (all of them with `redo`),
    then bring its approximate vector index up to date (assistant/search/ann.py `refresh`, with `threads`)."""
    path = Path(path).expanduser()
    con = _open_current(path)
    try:
        report = embed_vectors(con, path, embedder, progress, redo)
        report.ann = ann.refresh(con, path, threads)
        return report
    finally:
        con.close()


def index_embedder(path: Path) -> str | None:
    """The embedder whose vectors the index at `path` holds, or None (no vectors yet, or no such file)."""
    try:
        con = sqlite3.connect(Path(path).expanduser().resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return stored_embedder(con)[0]
    except sqlite3.Error:
        return None
    finally:
        con.close()
