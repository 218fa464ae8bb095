"""An append-only JSONL log of results that a kill cannot corrupt, and that two runs cannot share.

`ResultLog(path, key)` locks `path + ".lock"` (an OS lock, released even when the process is killed; a second
run on the same file fails with a clear message), repairs the file, and remembers the keys of the rows it holds
so a resumed run skips them. Repairs: a last line cut off mid-write is removed (and reported) so its task runs
again; a complete last line missing only its newline gets one; a corrupt line elsewhere is reported and
ignored. `append` writes one whole line with a single `write` and fsyncs it, so every row reported as done is
on disk; a write that fails (a full disk, a file-size limit) is undone — the file is cut back to its last
whole line — and raised as an AssistantError that says what to free, so the file stays valid and a re-run
asks only the rest. `drop(pred)` rewrites the file without some rows (atomically), for `--retry-errors`.

    with ResultLog(Path("answers.jsonl"), key=lambda row: row["id"]) as log:
        log.append({"id": "q1", "answer": "..."})
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError
from assistant.jsonl import lines

try:
    import fcntl
except ImportError:  # pragma: no cover — Windows: an exclusive-create lock file instead
    fcntl = None  # type: ignore[assignment]


def _lock(path: Path) -> int:
    """Hold an exclusive lock on `path`; the file holds the holder's pid."""
    while True:
        try:
            flags = os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL)
            fd = os.open(path, flags, 0o644)
        except FileExistsError:
            raise AssistantError(f"{path} exists: another run may be writing — if none is, delete it") from None
        if fcntl is None:
            break
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            target = path.name.removesuffix(".lock")
            raise AssistantError(
                f"another run (pid {pid}) is writing {target} — wait for it to finish, or write elsewhere with -o/--out"
            ) from None
        try:  # the holder before us may have deleted the file after we opened it: lock the one now there
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _why(error: OSError) -> str:
    """An OSError in words: "No space left on device", not "[Errno 28] …: 'path'"."""
    return error.strerror or str(error)


class ResultLog:
    """Rows of JSON, one a line, keyed by `key(row)`; see the module docstring."""

    def __init__(self, path: Path, key: Callable[[dict[str, Any]], Hashable]):
        self.path = Path(path)
        self.key = key
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.rows: list[dict[str, Any]] = []
        self.done: set[Hashable] = set()
        self.warnings: list[str] = []
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self._size = 0  # bytes of whole rows in the file: where a failed write is cut back to

    def __enter__(self) -> ResultLog:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> ResultLog:
        """Lock, repair and read the log; `warnings` says what was repaired."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock(self.lock_path)
        except OSError as e:
            raise AssistantError(
                f"cannot write next to {self.path}: {_why(e)} — write elsewhere with -o/--out"
            ) from None
        try:
            self._repair_and_read()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
        except OSError as e:
            self.close()
            raise AssistantError(
                f"cannot open {self.path}: {_why(e)} — free some space or fix its permissions"
            ) from None
        except BaseException:
            self.close()
            raise
        return self

    def _repair_and_read(self) -> None:
        data = self.path.read_bytes() if self.path.exists() else b""
        body, newline, tail = data.rpartition(b"\n")
        if tail:  # the last line has no newline: complete JSON missing "\n", or cut off mid-write
            line_no = data.count(b"\n") + 1
            try:
                complete = isinstance(json.loads(tail), dict)
            except ValueError:
                complete = False
            if complete:
                fixed = data + b"\n"
            else:
                fixed = body + newline
                preview = tail[:60].decode(errors="replace").replace("\x00", "")
                self.warnings.append(
                    f"{self.path}: line {line_no} was cut off mid-write ({len(tail)} bytes, {preview!r}…): "
                    "removed it; its question will be asked again"
                )
            with open(self.path, "r+b") as f:
                f.truncate(len(body + newline))  # the file only ever shrinks to, or grows from, a line end
                f.seek(0, os.SEEK_END)
                f.write(fixed[len(body + newline) :])
                f.flush()
                os.fsync(f.fileno())
            data = fixed
        for n, line in enumerate(lines(data.decode("utf-8", errors="replace")), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                key = self.key(row)
            except (ValueError, KeyError, TypeError):
                self.warnings.append(f"{self.path}: line {n} is not a result row: ignored; its question runs again")
                continue
            self.rows.append(row)
            self.done.add(key)

    def append(self, row: dict[str, Any]) -> None:
        """Write one row as one line and make it durable before returning."""
        if self._fd is None:
            raise RuntimeError("ResultLog.append before open()")
        data = (json.dumps(row, ensure_ascii=False) + "\n").encode()
        try:
            rest = data
            while rest:
                rest = rest[os.write(self._fd, rest) :]
            os.fsync(self._fd)
        except OSError as e:
            # Undo a partial line: the file ends with a whole row, as if this one had not been written (should
            # that fail too, the next open() cuts the partial line off anyway).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            raise AssistantError(
                f"could not write to {self.path}: {_why(e)} — free some disk space (or raise the file-size limit) and "
                f"run the same command again: "
                f"the {len(self.rows)} rows already in it are kept and only the rest is asked"
            ) from None
        self._size += len(data)
        self.rows.append(row)
        self.done.add(self.key(row))

    def drop(self, pred: Callable[[dict[str, Any]], bool]) -> int:
        """Remove the rows where `pred` is true (atomically: a new file replaces the old); returns how many."""
        keep = [r for r in self.rows if not pred(r)]
        dropped = len(self.rows) - len(keep)
        if dropped:
            tmp = self.path.with_name(self.path.name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(b"".join((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in keep))
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, self.path)
            except OSError as e:
                tmp.unlink(missing_ok=True)
                raise AssistantError(
                    f"could not rewrite {self.path}: {_why(e)} — it is unchanged; free some space"
                ) from None
            if self._fd is not None:
                os.close(self._fd)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            self._size = os.fstat(self._fd).st_size
            self.rows = keep
            self.done = {self.key(r) for r in keep}
        return dropped

    def close(self) -> None:
        """Close the file and release the lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            if fcntl is not None:
                # Delete while still holding it; a run that opened the old file sees the inode change and retries.
                self.lock_path.unlink(missing_ok=True)
            os.close(self._lock_fd)
            self._lock_fd = None
            if fcntl is None:  # pragma: no cover
                self.lock_path.unlink(missing_ok=True)
