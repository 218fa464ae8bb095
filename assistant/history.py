"""Saved chats: one SQLite file (`<data dir>/chats.db`) of conversations and their turns, and the Markdown
transcript that `/save` writes and `assistant history ID` prints.

    from assistant.history import ChatStore
    store = ChatStore.default()
    for c in store.conversations(): print(c.id, c.started, c.first_question, c.turns)
    print(transcript(store.turns(1), "Conversation 1"))

A conversation row is written with its first turn, so a chat left without a question leaves nothing behind.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError, BadInput
from assistant.events import Answer
from assistant.settings import data_dir

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    started TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation INTEGER NOT NULL REFERENCES conversations(id),
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    sources TEXT NOT NULL,
    model TEXT NOT NULL,
    time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS turns_by_conversation ON turns(conversation, id);
"""


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class ChatTurn:
    """One question of a chat, its answer and the sources it cites (`Source.public()` dicts)."""

    question: str
    answer: str
    sources: list[dict[str, Any]] = field(default_factory=list)
    model: str = ""
    time: str = field(default_factory=_now)

    @classmethod
    def of(cls, answer: Answer) -> ChatTurn:
        """The turn an Answer event makes."""
        return cls(answer.question, answer.answer, [s.public() for s in answer.sources], answer.model)


@dataclass
class Conversation:
    """A line of `assistant history`."""

    id: int
    started: str
    first_question: str
    turns: int


class ChatStore:
    """Conversations and their turns in one SQLite file."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def default(cls) -> ChatStore:
        """The store in the user's data dir."""
        return cls(data_dir() / "chats.db")

    def _connect(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path)
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise AssistantError(f"cannot open the chat history {self.path}: {e} — check the data dir") from None
        return db

    def add(self, conversation: int | None, turn: ChatTurn) -> int:
        """Save a turn; `conversation=None` starts a new conversation. Returns the conversation's id."""
        with closing(self._connect()) as db, db:
            if conversation is None:
                cursor = db.execute("INSERT INTO conversations (started) VALUES (?)", (turn.time,))
                conversation = cursor.lastrowid or 0
            db.execute(
                "INSERT INTO turns (conversation, question, answer, sources, model, time) VALUES (?, ?, ?, ?, ?, ?)",
                (conversation, turn.question, turn.answer, json.dumps(turn.sources), turn.model, turn.time),
            )
        return conversation

    def replace_last(self, conversation: int, turn: ChatTurn) -> None:
        """Put `turn` in place of the last turn of a conversation (a question answered again with /retry)."""
        with closing(self._connect()) as db, db:
            db.execute(
                "UPDATE turns SET question = ?, answer = ?, sources = ?, model = ?, time = ? "
                "WHERE id = (SELECT MAX(id) FROM turns WHERE conversation = ?)",
                (turn.question, turn.answer, json.dumps(turn.sources), turn.model, turn.time, conversation),
            )

    def conversations(self) -> list[Conversation]:
        """Every conversation, oldest first."""
        if not self.path.exists():
            return []
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT c.id, c.started, (SELECT question FROM turns WHERE conversation = c.id ORDER BY id LIMIT 1), "
                "(SELECT COUNT(*) FROM turns WHERE conversation = c.id) FROM conversations c ORDER BY c.id"
            ).fetchall()
        return [Conversation(id, started, first or "", n) for id, started, first, n in rows]

    def turns(self, conversation: int) -> list[ChatTurn]:
        """The turns of one conversation, in order; an unknown id is an AssistantError."""
        if not self.path.exists():
            raise BadInput(f"no conversation {conversation}: no chat is saved yet — `assistant chat` starts one")
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT question, answer, sources, model, time FROM turns WHERE conversation = ? ORDER BY id",
                (conversation,),
            ).fetchall()
        if not rows:
            raise BadInput(f"no conversation {conversation} — `assistant history` lists them")
        return [ChatTurn(q, a, json.loads(s), m, t) for q, a, s, m, t in rows]


def transcript(turns: list[ChatTurn], title: str) -> str:
    """A chat as Markdown: each question as a heading, the answer, then its numbered sources."""
    lines = [f"# {title}", ""]
    for turn in turns:
        lines += [f"## {turn.question}", "", turn.answer, ""]
        if turn.sources:
            lines.append("Sources:")
            for s in turn.sources:
                where = f" <{s['url']}>" if s.get("url") else f" ({s.get('id', '')})"
                lines.append(f"- [{s['n']}] {s['title']}{where}")
            lines.append("")
        lines += [f"*{turn.model} · {turn.time}*", ""]
    return "\n".join(lines)
