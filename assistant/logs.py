"""One logging setup for every command: log records and Python warnings, one line each on stderr.

By default warnings and errors show, each as one `warning: …` line; `-v/--verbose` adds the steps and their
timings (INFO records, each after the seconds since the process started and the logger's name), `-q/--quiet`
leaves errors only. Warnings that libraries raise with `warnings.warn` (transformers, a deprecation) go through
the same handler instead of being printed raw with their file and line. Library code only logs
(`logging.getLogger(__name__)`); the CLI decides what shows:

    with logging_to(err_console, verbose=True):
        ...
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.markup import escape


class ConsoleHandler(logging.Handler):
    """Prints each record as one line on a rich console (stderr)."""

    def __init__(self, console: Console, verbose: bool):
        super().__init__()
        self.console, self.verbose = console, verbose

    def emit(self, record: logging.LogRecord) -> None:
        """One line: the label of a warning or error; with -v, the time since start and the logger's name."""
        try:
            label = ""
            if record.levelno >= logging.ERROR:
                label = "[red]error:[/red] "
            elif record.levelno >= logging.WARNING:
                label = "[yellow]warning:[/yellow] "
            where = f"[dim]{record.relativeCreated / 1000:7.2f}s {escape(record.name)}:[/dim] " if self.verbose else ""
            self.console.print(f"{where}{label}{escape(record.getMessage())}", highlight=False, soft_wrap=True)
        except Exception:  # a handler must never raise into the code that logged
            self.handleError(record)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """`warnings.showwarning`, through logging: the category and the message, not the source line."""
    logging.getLogger("py.warnings").warning("%s: %s", category.__name__, message)


@contextmanager
def logging_to(console: Console, verbose: bool = False, quiet: bool = False) -> Iterator[ConsoleHandler]:
    """Route log records and warnings to `console` while the block runs; the setup before it comes back after
    (a handler installed by an outer block is set aside, so nothing prints twice)."""
    root = logging.getLogger()
    handler = ConsoleHandler(console, verbose)
    outer = [h for h in root.handlers if isinstance(h, ConsoleHandler)]
    saved = root.level, warnings.showwarning
    for h in outer:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.ERROR if quiet else logging.WARNING)
    warnings.showwarning = _show_warning
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for h in outer:
            root.addHandler(h)
        root.setLevel(saved[0])
        warnings.showwarning = saved[1]
