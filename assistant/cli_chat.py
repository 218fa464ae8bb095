"""The `chat` and `history` commands: a terminal chat with `ask`'s options, and the chats it saved.

assistant chat --search local --index tests.db
assistant history          # id, started, first question, turns
assistant history 3        # one conversation as Markdown, with its sources
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from assistant.cli_app import app, fails_cleanly, with_settings
from assistant.settings import Settings


@app.command()
@fails_cleanly
@with_settings()
def chat(settings: Settings) -> None:
    """Chat in the terminal: answers with citations that remember the conversation; /help inside lists commands."""
    from assistant.chat import run_chat

    run_chat(settings)


@app.command()
@fails_cleanly
def history(
    conversation: Annotated[int | None, typer.Argument(help="Show this conversation (an id from the list).")] = None,
) -> None:
    """List the saved chats, or show one (as Markdown, with its sources)."""
    from assistant.history import ChatStore, transcript

    store = ChatStore.default()
    if conversation is not None:
        turns = store.turns(conversation)
        typer.echo(transcript(turns, f"Conversation {conversation} — {turns[0].time}"))
        return
    found = store.conversations()
    if not found:
        typer.echo(f"no saved chats yet in {store.path} — start one with `assistant chat`")
        return
    table = Table("id", "started", "turns", "first question")
    for c in found:
        table.add_row(str(c.id), c.started, str(c.turns), c.first_question)
    Console(highlight=False).print(table)
