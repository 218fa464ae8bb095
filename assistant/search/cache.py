"""A small on-disk cache with a time-to-live: one SQLite file of JSON values keyed by (kind, key).

    PYTHONPATH=. python -c "from pathlib import Path; from assistant.search.cache import Cache; \
        c = Cache(Path('/tmp/c.db'), ttl=60); c.put('search', 'q', [1, 2]); print(c.get('search', 'q'))"

The cache is a convenience, never a failure: a corrupt file is moved aside and a fresh one created, and a
cache that cannot be written at all (read-only disk) turns itself off with a logged warning.
ttl=0 disables it. A key holds everything that decides the value: `search_key` the engine, its instance, the
region, the query and the count (a French search must not get the world-wide answer); a page's key, in
assistant/web.py, also the addresses its fetch policy could reach.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS entries (kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
    "stored_at REAL NOT NULL, PRIMARY KEY (kind, key))"
)


def search_key(backend: str, query: str, max_results: int, *, instance: str = "", region: str = "") -> str:
    """The cache key of a web search: the engine, its instance (a SearXNG URL), the region, the query and the count."""
    return json.dumps([backend, instance, region, query, max_results], ensure_ascii=False)


class Cache:
    """JSON values under (kind, key), fresh for `ttl` seconds; `clock` is injectable for tests."""

    def __init__(self, path: Path, ttl: float, clock: Callable[[], float] = time.time):
        self.path = Path(path)
        self.ttl = ttl
        self.clock = clock
        self.enabled = ttl > 0
        self._ready = False

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=5.0)
        if not self._ready:
            try:
                con.execute(_SCHEMA)
                # Drop what has gone stale so the file does not grow forever.
                con.execute("DELETE FROM entries WHERE stored_at < ?", (self.clock() - self.ttl,))
                con.commit()
            except BaseException:
                con.close()
                raise
            self._ready = True
        return con

    def _run(self, op: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `op` on a connection; rebuild a corrupt file once; turn the cache off if it cannot work."""
        if not self.enabled:
            return None
        for attempt in (1, 2):
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with closing(self._connect()) as con:
                    result = op(con)
                    con.commit()
                    return result
            except sqlite3.OperationalError as e:  # locked, read-only, cannot open: not the file's fault
                if "locked" in str(e) or "busy" in str(e):
                    log.warning("search cache %s is busy (%s); skipping it this once", self.path, e)
                else:
                    self._disable(e)
                return None
            except sqlite3.DatabaseError as e:  # "file is not a database", "database disk image is malformed"
                if attempt == 1 and self._set_aside(e):
                    continue
                self._disable(e)
                return None
            except OSError as e:
                self._disable(e)
                return None
        return None

    def _set_aside(self, err: Exception) -> bool:
        """Move a corrupt file out of the way (kept for a look); False if that is impossible."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        log.warning("search cache %s is unreadable (%s); moving it to %s and starting afresh", self.path, err, aside)
        try:
            self.path.replace(aside)
            for suffix in ("-journal", "-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        except OSError:
            return False
        self._ready = False
        return True

    def _disable(self, err: Exception) -> None:
        log.warning("search cache %s cannot be used (%s); continuing without a cache", self.path, err)
        self.enabled = False

    def get(self, kind: str, key: str) -> Any | None:
        """The value stored under (kind, key), or None when absent, stale or the cache is off."""

        def op(con: sqlite3.Connection) -> Any | None:
            row = con.execute("SELECT value, stored_at FROM entries WHERE kind = ? AND key = ?", (kind, key)).fetchone()
            if row is None or self.clock() - row[1] > self.ttl:
                return None
            try:
                return json.loads(row[0])
            except ValueError:
                return None

        return self._run(op)

    def put(self, kind: str, key: str, value: Any) -> None:
        """Store a JSON-serialisable `value` under (kind, key), replacing any older one."""
        if not self.enabled:
            return
        data = json.dumps(value, ensure_ascii=False)  # outside _run: a value that is not JSON is a bug
        self._run(
            lambda con: con.execute(
                "INSERT OR REPLACE INTO entries (kind, key, value, stored_at) VALUES (?, ?, ?, ?)",
                (kind, key, data, self.clock()),
            )
        )

    def clear(self) -> None:
        """Forget every entry (deletes the file, so this works on a corrupt one too)."""
        for suffix in ("", "-journal", "-wal", "-shm"):
            self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
        self._ready = False
