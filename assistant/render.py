"""Rich rendering of loop events for the terminal: steps as compact lines, the answer streamed (an uncertain one
marked as such), then sources."""

from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from assistant.events import Answer, Event, StepStarted, Token, ToolCalled, ToolReturned

# C0 and C1 control characters but tab and newline: page text (a title, a snippet, an answer copied from one) must
# not move the cursor, retitle the window or recolour the terminal with escape sequences.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` without control characters (tab and newline stay)."""
    return _CONTROL.sub("", text)


def safe(text: str) -> str:
    """`text` as the console prints it: printable, and its brackets not read as Rich markup."""
    return escape(printable(text))


class EventPrinter:
    """Prints events as they arrive; plain text when the console is not a terminal or NO_COLOR is set."""

    def __init__(self, console: Console, show_steps: bool = True):
        self.console = console
        self.show_steps = show_steps
        self.streaming = False
        self.streamed: list[str] = []

    def __call__(self, event: Event) -> None:
        """Render one event."""
        c = self.console
        if isinstance(event, Token):
            c.print(Text(printable(event.text)), end="", soft_wrap=True)
            self.streaming = True
            self.streamed.append(event.text)
            return
        if self.streaming:
            c.print()
            self.streaming = False
        if isinstance(event, StepStarted) or not self.show_steps and not isinstance(event, Answer):
            return
        if isinstance(event, ToolCalled):
            self.streamed.clear()
            args = ", ".join(f"{k}={v!r}" for k, v in event.arguments.items())
            c.print(f"[dim]→ {event.name}({safe(args)})[/dim]")
        elif isinstance(event, ToolReturned):
            if event.error:
                c.print(f"[yellow]  ! {safe(event.error)}[/yellow]")
            else:
                titles = "; ".join(dict.fromkeys(s.title for s in event.sources))
                c.print(f"[dim]  {safe(event.summary)} ({event.seconds:.1f}s): {safe(titles)[:160]}[/dim]")
        elif isinstance(event, Answer):
            if " ".join(event.answer.split()) != " ".join("".join(self.streamed).split()):
                c.print(f"[bold]→[/bold] {safe(event.answer)}")  # citations were checked: show the result
            self.sources(event)

    def sources(self, answer: Answer) -> None:
        """An uncertain answer's mark, the numbered sources an answer cites, and any notes."""
        c = self.console
        if answer.uncertain:
            c.print(
                f"[bold yellow]? uncertain[/bold yellow] [yellow](confidence {answer.confidence or 0:.2f}): "
                + ("the sources did not settle this" if answer.shown else "no source was read to settle this")
                + (" — take the answer above as a guess, not a finding" if answer.short_answer else "")
                + "[/yellow]"
            )
        if answer.sources:
            c.print("\n[bold]Sources[/bold]")
            for s in answer.sources:
                where = s.url or s.id
                c.print(f"  [{s.n}] {safe(s.title)} — {safe(where)}", highlight=False)
                if s.snippet:
                    c.print(f"      [dim]{safe(' '.join(s.snippet.split())[:160])}[/dim]", highlight=False)
        for note in answer.notes:
            c.print(f"[yellow]note: {safe(note)}[/yellow]")
        t = answer.timings
        c.print(
            f"[dim]{answer.model} · {answer.usage['prompt_tokens']}+{answer.usage['completion_tokens']} tokens · "
            f"{t['total']:.1f}s (load {t['load']:.1f}, search {t['search']:.1f}, read {t['read']:.1f}, "
            f"prefill {t['prefill']:.1f}, decode {t['decode']:.1f})[/dim]"
        )
