"""The small interface every model backend implements, and the records that cross it.

A backend turns chat messages into a stream of text deltas ending in one `Completion`. Tool calls and
constrained (JSON-schema) output are backend concerns: the loop never parses model text itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]
ToolChoice = Literal["auto", "required", "none"]


@dataclass
class ToolCall:
    """One call the model asked for."""

    name: str
    arguments: dict[str, Any]
    id: str = ""


@dataclass
class Message:
    """One chat message."""

    role: Role
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None


@dataclass
class Usage:
    """Token counts of one generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


@dataclass
class TokenLogprob:
    """One generated token: its text (bytes of a character split over tokens go to the token that completes it)
    and its log-probability under the model, taken from the distribution it was chosen from (≤ 0)."""

    text: str
    logprob: float


@dataclass
class Completion:
    """The end of one generation: the text, any parsed tool calls, tokens and timings.

    `tool_error` is set when the model tried to call a tool but the call could not be parsed; the loop shows it
    to the model as an observation. `logprobs` holds each generated token's log-probability, or None where the
    backend (or the server behind it) gives none: the answer's confidence then rests on the support check alone
    (assistant/confidence.py).
    """

    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str = "stop"
    prefill_s: float = 0.0
    decode_s: float = 0.0
    tool_error: str | None = None
    logprobs: list[TokenLogprob] | None = None


@dataclass
class GenerationOptions:
    """How to decode: limits, sampling, tools and constraints."""

    max_tokens: int = 384
    temperature: float = 0.0
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    json_schema: dict[str, Any] | None = None
    seed: int | None = None


@runtime_checkable
class ModelBackend(Protocol):
    """What the loop needs of a model, and what it can do (capabilities are declared, never guessed)."""

    name: str
    context_length: int  # tokens the prompt and the answer share
    supports_tools: bool  # its tool calls can be decoded (assistant/models/toolcalls.py): the multi-step loop
    supports_schema: bool  # decoding can be held to a JSON schema (a grammar, or the server's response_format)
    grammar_from_schema: bool  # that constraint is a llama.cpp grammar, which cannot express every schema
    counts_tokens_locally: bool  # count_tokens costs no request

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        """Yield text deltas of the visible answer, then exactly one `Completion`."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens `text` costs in this model's vocabulary."""
        ...


def generate(model: ModelBackend, messages: list[Message], options: GenerationOptions | None = None) -> Completion:
    """Run `model.stream` to the end and return its `Completion`."""
    for item in model.stream(messages, options or GenerationOptions()):
        if isinstance(item, Completion):
            return item
    raise RuntimeError(f"backend {model.name} ended its stream without a Completion")
