"""The one error type the CLI catches and prints as a one-line fix (exit code 1)."""


class AssistantError(Exception):
    """A problem the user can fix: the message says what happened and what to do."""


class MissingExtra(AssistantError):
    """An optional dependency is not installed."""

    def __init__(self, module: str, extra: str):
        super().__init__(f"{module} is not installed — run `pip install 'search-assistant[{extra}]'`")


class SearchError(AssistantError):
    """A search backend failed (network, rate limit, bad response)."""


class FetchError(AssistantError):
    """A page could not be fetched or read."""
