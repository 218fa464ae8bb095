"""The `chat` and `history` commands: a terminal chat with `ask`'s options, and the chats it saved.

assistant chat --search local --index tests.db
assistant chat --resume 3  # go on with conversation 3
assistant history          # id, started, turns, first question (tab-separated when piped)
assistant history 3        # one conversation as Markdown, with its sources
assistant history --json   # the same as JSON (README: Chat)
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console

from assistant.cli_app import app, fails_cleanly, with_settings
from assistant.listing import print_json, show_table
from assistant.settings import Settings


@app.command()
@fails_cleanly
@with_settings()
def chat(
    settings: Settings,
    resume: Annotated[
        int | None,
        typer.Option("--resume", "-r", help="Go on with a saved chat: its turns are the context, new ones are added."),
    ] = None,
) -> None:
    """Chat in the terminal: answers with citations that remember the conversation; /help inside lists commands."""
    from assistant.chat import run_chat

    run_chat(settings, resume=resume)


@app.command()
@fails_cleanly
def history(
    conversation: Annotated[int | None, typer.Argument(help="Show this conversation (an id from the list).")] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print JSON: a list of {id, started, turns, first_question}, or with an id {id, turns: "
            "[{question, answer, sources, model, time}]}.",
        ),
    ] = False,
) -> None:
    """List the saved chats, or show one (as Markdown, with its sources)."""
    from assistant.history import ChatStore, transcript

    store = ChatStore.default()
    if conversation is not None:
        turns = store.turns(conversation)
        if as_json:
            print_json({"id": conversation, "turns": [asdict(t) for t in turns]})
        else:
            typer.echo(transcript(turns, f"Conversation {conversation} — {turns[0].time}"))
        return
    found = store.conversations()
    if as_json:
        print_json([asdict(c) for c in found])
        return
    if not found:
        typer.echo(f"no saved chats yet in {store.path} — start one with `assistant chat`")
        return
    rows = [[str(c.id), c.started, str(c.turns), c.first_question] for c in found]
    show_table(Console(highlight=False), ("id", "started", "turns", "first question"), rows)
