"""Exit codes, and the one error type the CLI catches and prints as a one-line fix.

Every command exits with a code of `Exit`, the single place for the numbers (README: "Exit codes"):

    0   done; for `ask`, answered from sources: the answer cites a source that holds it
    1   runtime failure: a model, server, download, disk or missing extra failed the command; `batch`, `eval` and
        `extract --jsonl` also when any row ended in an error (they finish the other rows first and say how many)
    2   bad input: a flag, argument, setting or input file the command cannot use (Typer's usage errors too)
    3   `ask` answered, but not from sources: closed-book, no source found, every search backend failed, or the
        answer cites no source that holds it (the answer's notes say which)
    4   `ask` searched and read sources, but they did not settle the answer: its confidence stayed below the
        threshold after a second look (assistant/confidence.py); the best candidate is shown marked uncertain,
        or withheld (`uncertain_answers = "hide"`)
    130 interrupted (Ctrl-C); `batch` and `eval` resume where they stopped
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    """The exit codes every command follows."""

    OK = 0
    FAILED = 1
    BAD_INPUT = 2  # the code Click gives its own usage errors
    UNSOURCED = 3
    UNCERTAIN = 4
    INTERRUPTED = 130


class AssistantError(Exception):
    """A problem the user can fix: the message says what happened and what to do (a runtime failure, exit 1)."""

    exit_code = Exit.FAILED


class BadInput(AssistantError):
    """What the command was given cannot be used: a flag, argument, setting or input file (exit 2)."""

    exit_code = Exit.BAD_INPUT


class MissingExtra(AssistantError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed — run `pip install 'search-assistant[{extra}]'`")


class SearchError(AssistantError):
    """A search backend failed (network, rate limit, bad response)."""


class FetchError(AssistantError):
    """A page could not be fetched or read."""
