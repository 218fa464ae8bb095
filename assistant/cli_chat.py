"""The `chat` and `history` commands: a terminal chat with `ask`'s options, and the chats it saved.

    assistant chat --search local --index tests.db
    assistant history          # id, started, first question, turns
    assistant history 3        # one conversation as Markdown, with its sources

The commands register themselves on the app when assistant/cli.py imports this module.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from assistant.cli import (
    AllowPrivateOpt,
    BackendOpt,
    BaseUrlOpt,
    IndexOpt,
    LangOpt,
    MaxStepsOpt,
    ModelOpt,
    SearchOpt,
    SearxOpt,
    app,
    fails_cleanly,
    settings_from,
)


@app.command()
@fails_cleanly
def chat(
    model: ModelOpt = None,
    backend: BackendOpt = None,
    base_url: BaseUrlOpt = None,
    search: SearchOpt = None,
    index: IndexOpt = None,
    searxng_url: SearxOpt = None,
    lang: LangOpt = None,
    allow_private: AllowPrivateOpt = None,
    max_steps: MaxStepsOpt = None,
) -> None:
    """Chat in the terminal: answers with citations that remember the conversation; /help inside lists commands."""
    from assistant.chat import run_chat

    s = settings_from(
        model,
        backend,
        base_url,
        search,
        index,
        searxng_url,
        lang=lang,
        allow_private=allow_private,
        max_steps=max_steps,
    )
    run_chat(s)


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
