"""`assistant chat`: a terminal chat over the same loop as `ask`, with earlier turns as context.

    assistant chat --search local --index tests.db
    > What is the capital of Colombia?
    > and how many people live there?
    > /save chat.md

    assistant chat --resume 3       # go on with saved conversation 3 (`assistant history` lists them)

On a terminal each answer streams as Markdown (rich), each search or page read is one line as it happens, and the
numbered sources follow the answer; lines are read with prompt_toolkit (arrow keys, history kept in the data
dir). Piped, or with NO_COLOR set, the output is plain text. Ctrl-C stops an answer (or clears the line), Ctrl-D
leaves. Every answered turn is saved to `<data dir>/chats.db` (assistant.history); `/help` lists the commands.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Generator
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.spinner import Spinner

from assistant.errors import AssistantError
from assistant.events import Answer, Event, Token, ToolCalled, ToolReturned
from assistant.history import ChatStore, ChatTurn, transcript
from assistant.prompting import Turn
from assistant.render import EventPrinter
from assistant.runner import Assistant
from assistant.settings import Settings, data_dir

_READ_PAGE = re.compile(r"^(https?://.+)#\d+$")  # the id of a passage that fetch_page read from a page
_LANG = re.compile(r"^(auto|[a-z]{2,3})$")


class ChatPrinter(EventPrinter):
    """Chat rendering. Live: the answer streams as Markdown in a transient view, then is printed once, checked.
    Plain: tokens as they come, as `ask` prints them. Steps are one line each in both."""

    def __init__(self, console: Console, live: bool):
        super().__init__(console)
        self.live = live
        self.view: Live | None = None
        self.text = ""

    def __call__(self, event: Event) -> None:
        """Render one event."""
        if isinstance(event, Token):
            self.text += event.text
            if not self.live:
                super().__call__(event)
            elif self.text.strip():
                self._show(_markdown(self.text))
            return
        self.close()
        c = self.console
        if self.streaming:  # plain: end the streamed line
            c.print()
            self.streaming = False
        if isinstance(event, ToolCalled):
            self.text, self.streamed, self.streaming = "", [], False  # a new step: the draft is void
            what = event.arguments.get("query") or event.arguments.get("url") or event.arguments
            c.print(f"[cyan]{'search' if event.name == 'web_search' else 'read'}[/cyan] {escape(str(what))}")
        elif isinstance(event, ToolReturned):
            if event.error:
                c.print(f"  [yellow]! {escape(event.error)}[/yellow]")
            else:
                pages = {m.group(1) for s in event.sources if (m := _READ_PAGE.match(s.id))}
                read = f", {len(pages)} pages read" if pages else ""
                titles = escape("; ".join(dict.fromkeys(s.title for s in event.sources))[:100])
                c.print(f"  [dim]{len(event.sources)} results{read} ({event.seconds:.1f}s): {titles}[/dim]")
            self.waiting()
        elif isinstance(event, Answer):
            if self.live:
                c.print(_markdown(event.answer))
                self.sources(event)
            else:
                super().__call__(event)
            c.print()

    def waiting(self) -> None:
        """Show that the model is at work until its first token (prefill takes seconds on a CPU)."""
        if self.live:
            self._show(Spinner("dots", "[dim]answering…[/dim]"))

    def _show(self, renderable: Markdown | Spinner) -> None:
        if self.view is None:
            self.view = Live(console=self.console, transient=True, refresh_per_second=12)
            self.view.start()
        self.view.update(renderable)

    def close(self) -> None:
        """End the live view (it is transient: the draft disappears)."""
        if self.view is not None:
            self.view.stop()
            self.view = None

    def stop(self) -> None:
        """The answer was interrupted: keep what was streamed, then say so."""
        self.close()
        if self.live and self.text.strip():
            self.console.print(_markdown(self.text))
        elif self.streaming:
            self.console.print()
        self.console.print("[dim](stopped)[/dim]")


def _markdown(text: str) -> Markdown:
    """Markdown in which a line break stays one: answers put the explanation on its own line."""
    return Markdown(re.sub(r"(?<!\n)\n(?!\n)", "  \n", text.strip()))


@dataclass
class Chat:
    """One chat session: the assistant (each question goes down its language's route, as in `ask`), the turns
    so far, and the slash commands. An assistant replaced by /model, /search or /lang is closed."""

    assistant: Assistant
    console: Console
    store: ChatStore
    live: bool = False
    search: bool = True
    turns: list[ChatTurn] = field(default_factory=list)
    conversation: int | None = None
    last: Answer | None = None
    unanswered: str | None = None  # a question stopped or failed before its answer: what /retry asks again

    def run(self, read: Callable[[str], str]) -> None:
        """Read lines until Ctrl-D or /exit; Ctrl-C at the prompt clears the line."""
        self.console.print(
            f"[dim]assistant chat · {escape(self.assistant.model.name)} · search {escape(self._search_name())}"
            " · /help for commands, Ctrl-D to leave[/dim]"
        )
        if self.turns:
            self.console.print(
                f"[dim]conversation {self.conversation} resumed, {len(self.turns)} turns; the last: "
                f"{escape(self.turns[-1].question)}[/dim]"
            )
        while True:
            try:
                line = read("> ").strip()
            except KeyboardInterrupt:
                continue
            except EOFError:
                self.console.print()
                return
            if line.startswith("/"):
                if not self.command(line):
                    return
            elif line:
                self.ask(line)

    def ask(self, question: str, again: bool = False) -> None:
        """Answer one question with the earlier turns as context; save the turn. `again`: the question is the last
        turn's, answered anew without its old answer in context, and the new turn replaces it."""
        printer = ChatPrinter(self.console, self.live)
        history = [Turn(t.question, t.answer) for t in (self.turns[:-1] if again else self.turns)]
        self.unanswered = question
        events = self.assistant.ask(question, search=self.search, history=history)
        final = None
        try:
            printer.waiting()
            for event in events:
                printer(event)
                final = event if isinstance(event, Answer) else final
        except KeyboardInterrupt:
            if isinstance(events, Generator):
                events.close()  # unwinds the model's stream: a server connection is closed, a decode ends
            printer.stop()
            return
        except AssistantError as e:
            printer.close()
            self.console.print(f"[red]error:[/red] {escape(str(e))}")
            return
        finally:
            printer.close()
        if final is None:
            return
        self.last, self.unanswered = final, None
        turn = ChatTurn.of(final)
        if again:
            self.turns[-1] = turn
        else:
            self.turns.append(turn)
        try:
            if again and self.conversation is not None:
                self.store.replace_last(self.conversation, turn)
            else:
                self.conversation = self.store.add(self.conversation, turn)
        except AssistantError as e:
            self.console.print(f"[yellow]not saved:[/yellow] {escape(str(e))}")

    def command(self, line: str) -> bool:
        """Run a slash command; False means leave."""
        name, _, arg = line[1:].partition(" ")
        name, arg = name.lower(), arg.strip()
        if name in ("exit", "quit"):
            return False
        handler = COMMANDS.get(name)
        if handler is None:
            self.console.print(f"unknown command /{escape(name)} — /help lists the commands")
        else:
            try:
                handler[0](self, arg)
            except AssistantError as e:
                self.console.print(f"[red]error:[/red] {escape(str(e))}")
            except KeyboardInterrupt:
                self.console.print("[dim](stopped)[/dim]")
        return True

    def help(self, arg: str) -> None:
        """List the commands."""
        for name, (_, usage) in COMMANDS.items():
            self.console.print(f"  [bold]{'/' + name:9}[/bold] {escape(usage)}", highlight=False)
        self.console.print(f"  [bold]{'/exit':9}[/bold] leave (or Ctrl-D); Ctrl-C stops an answer")

    def sources(self, arg: str) -> None:
        """The sources of the last answer, with the start of what the model read in each."""
        if self.last is None or not self.last.sources:
            self.console.print("no sources yet: the last answer cited none" if self.last else "no answer yet")
            return
        for s in self.last.sources:
            self.console.print(f"[{s.n}] {escape(s.title)} — {escape(s.url or s.id)}", highlight=False)
            text = " ".join((s.text or s.snippet).split())
            text = text if len(text) <= 400 else text[:399] + "…"
            self.console.print(f"    [dim]{escape(text)}[/dim]", highlight=False)

    def set_search(self, arg: str) -> None:
        """Turn search on or off, or switch the backend (chain)."""
        if arg in ("on", "off"):
            if arg == "on" and self.assistant.search is None:
                raise AssistantError("no search backend is set — use /search local, /search ddgs, …")
            self.search = arg == "on"
        elif arg:
            self.assistant = self._rebuilt(self.assistant.settings.model_copy(update={"search": arg}))
            self.search = self.assistant.search is not None
        self.console.print(f"search: {escape(self._search_name())}")

    def set_model(self, arg: str) -> None:
        """Load another model; the conversation goes on."""
        if not arg:
            self.console.print(f"model: {escape(self.assistant.model.name)}")
            return
        settings = self.assistant.settings.model_copy(update={"model": arg})
        with self.console.status(f"loading {escape(arg)}…") if self.live else nullcontext():
            fresh = Assistant.from_settings(settings)
        self.assistant.close(keep_model=fresh.model is self.assistant.model)
        self.assistant = fresh
        self.console.print(f"model: {escape(fresh.model.name)} (loaded in {fresh.load_seconds:.1f}s)")

    def set_lang(self, arg: str) -> None:
        """Answer and search in one language, or detect it (auto)."""
        if arg and not _LANG.match(arg.lower()):
            raise AssistantError(f"{arg!r} is not a language code — /lang fr, /lang de or /lang auto")
        if arg:
            self.assistant = self._rebuilt(self.assistant.settings.model_copy(update={"lang": arg.lower()}))
        self.console.print(f"lang: {self.assistant.settings.lang}")

    def retry(self, arg: str) -> None:
        """Answer the last question again (after /search on, /model, …); the new answer takes the old one's place."""
        if self.unanswered:
            question, again = self.unanswered, False
        elif self.turns:
            question, again = self.turns[-1].question, True
        else:
            raise AssistantError("no question to answer again yet")
        self.console.print(f"[dim]again: {escape(question)}[/dim]")
        self.ask(question, again=again)

    def reset(self, arg: str) -> None:
        """Forget the conversation; the next question starts a new one."""
        self.turns, self.conversation, self.last, self.unanswered = [], None, None, None
        self.console.print("(new conversation)")

    def save(self, arg: str) -> None:
        """Write the conversation as Markdown."""
        if not arg:
            raise AssistantError("/save needs a file name, e.g. /save chat.md")
        path = Path(arg).expanduser()
        title = f"Chat with {self.assistant.model.name}"
        try:
            path.write_text(transcript(self.turns, title), encoding="utf-8")
        except OSError as e:
            raise AssistantError(f"cannot write {path}: {e.strerror or e}") from None
        self.console.print(f"saved {len(self.turns)} turns to {escape(str(path))}", highlight=False)

    def _rebuilt(self, settings: Settings) -> Assistant:
        """The assistant for new settings, keeping the loaded model (and what it is trusted with)."""
        fresh = Assistant.from_settings(settings, model=self.assistant.model, spec=self.assistant.spec)
        fresh.load_seconds = 0.0
        self.assistant.close(keep_model=True)
        return fresh

    def _search_name(self) -> str:
        if self.assistant.search is None:
            return "none"
        name = getattr(self.assistant.search, "name", self.assistant.settings.search)
        return f"{name} ({'on' if self.search else 'off'})"


COMMANDS: dict[str, tuple[Callable[[Chat, str], None], str]] = {
    "help": (Chat.help, "this list"),
    "sources": (Chat.sources, "the sources of the last answer"),
    "search": (Chat.set_search, "on | off | BACKEND: search or not, or with ddgs, searxng, local, a chain ddgs,local"),
    "model": (Chat.set_model, "NAME: load another model; the conversation goes on"),
    "lang": (Chat.set_lang, "CODE | auto: the language route (as --lang), or detect it per question"),
    "retry": (Chat.retry, "answer the last question again (e.g. after /search on); the new answer replaces it"),
    "reset": (Chat.reset, "start a new conversation"),
    "save": (Chat.save, "FILE: write the conversation as Markdown, with its sources"),
}


def line_reader(interactive: bool) -> Callable[[str], str]:
    """prompt_toolkit (line editing, arrow-key history saved in the data dir) on a terminal, else input()."""
    if not interactive:
        return input
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    path = data_dir() / "chat_history.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    session: PromptSession[str] = PromptSession(history=FileHistory(str(path)))
    return session.prompt


def run_chat(settings: Settings, resume: int | None = None) -> None:
    """Load the assistant the settings name and chat until Ctrl-D or /exit; `resume`: go on with that saved
    conversation, its turns in context and new turns added to it."""
    store = ChatStore.default()
    earlier = store.turns(resume) if resume is not None else []  # an unknown id fails before the model loads
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    plain = not sys.stdout.isatty() or bool(os.environ.get("NO_COLOR"))
    console = Console(highlight=False, color_system=None if plain else "auto")
    with console.status("loading the model…") if not plain else nullcontext():
        assistant = Assistant.from_settings(settings)
    chat = Chat(assistant, console, store, live=not plain, turns=earlier, conversation=resume)
    try:
        chat.run(line_reader(interactive))
    finally:
        chat.assistant.close()
