"""The OpenAI chat-completions protocol as `assistant serve` speaks it: every shape that crosses the wire.

In: a `ChatRequest` (the fields this server reads; sampling fields such as `temperature` or `tools` are accepted
and ignored: the server's settings decide), turned into a `Conversation`: the last user message is the question,
earlier user/assistant pairs are the chat's turns, and system (or developer) messages are the application's
instructions. Out: a completion, or stream chunks ending in `[DONE]`, whose text is the answer with its numbered
citations followed by the cited sources as a Markdown list; the `ask --json` object rides along under `EXTRA`
(the completion, and the stream's finishing chunk). An answer this server wrote and a client sends back as an
earlier turn is read back with `earlier_answer`, the inverse of `reply_text` and the stream's pieces.

    python -c "from assistant.serve.protocol import ChatRequest; print(ChatRequest.model_json_schema())"
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field

from assistant.errors import BadInput
from assistant.events import Answer, Source
from assistant.prompting import Turn

MODEL_ID = "search-assistant"  # searches, reads and cites
CLOSED_ID = f"{MODEL_ID}-closed"  # the same model, closed-book
MODELS = {MODEL_ID: True, CLOSED_ID: False}  # id -> whether it searches
EXTRA = "search_assistant"  # the field holding the `ask --json` object
MAX_REQUEST_BYTES = 1_000_000  # a body past this is refused (413) before it is parsed
MAX_INSTRUCTION_CHARS = 4_000  # system messages, joined: they go into every answering prompt


# --- in -------------------------------------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a message's content; only text parts can be read."""

    model_config = ConfigDict(extra="ignore")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    """One message as a client sends it."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        """The message's text; BadInput for an image or other part that is not text."""
        if isinstance(self.content, list):
            kinds = {p.type for p in self.content} - {"text"}
            if kinds:
                raise BadInput(f"messages may hold only text parts, not {', '.join(sorted(kinds))}")
            return "\n".join(p.text or "" for p in self.content)
        return self.content or ""


class StreamOptions(BaseModel):
    """`stream_options`: `include_usage` adds OpenAI's usage-only chunk at the end of the stream."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The body of POST /v1/chat/completions."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)  # the newer name of max_tokens
    n: Literal[1] = 1

    def answer_tokens(self) -> int | None:
        """The client's cap on each answer's tokens, if any (the server's `--max-tokens` caps it in turn)."""
        return self.max_completion_tokens or self.max_tokens


@dataclass(frozen=True)
class Conversation:
    """What the assistant is asked: the question, the chat's earlier turns (oldest first) and the application's
    instructions."""

    question: str
    history: list[Turn]
    instructions: str


def conversation(request: ChatRequest) -> Conversation:
    """The question, turns and instructions of a request; BadInput when there is no question to answer."""
    messages = request.messages
    if messages[-1].role != "user" or not messages[-1].text().strip():
        raise BadInput("the last message must be the user's question, with text")
    instructions = "\n\n".join(m.text().strip() for m in messages if m.role in ("system", "developer"))
    if len(instructions) > MAX_INSTRUCTION_CHARS:
        raise BadInput(f"the system messages hold {len(instructions)} characters; at most {MAX_INSTRUCTION_CHARS}")
    history: list[Turn] = []
    asked: str | None = None
    for message in messages[:-1]:
        if message.role == "user":
            asked = message.text().strip()  # a question never answered gives way to the next one
        elif message.role == "assistant" and asked:
            history.append(Turn(asked, earlier_answer(message.text())))
            asked = None
    return Conversation(messages[-1].text().strip(), history, instructions.strip())


# --- the answer's text ----------------------------------------------------------------------------------------

SOURCES_HEADING = "**Sources**"
_AGAIN = "*searching again: {}*"  # a draft answer no source supported; what follows replaces it
_CHECKED = "→ "  # the answer with its citations checked, when it differs from what was streamed
_AGAIN_LINE = re.compile(r"^\*searching again: .*\*$", re.M)
_SOURCE_LINE = re.compile(r"^- \[\d+\] ")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+!|~])")


def markdown_text(text: str) -> str:
    """Text from a page or a model shown literally by a Markdown renderer: no link, image or emphasis of its own."""
    return _MARKDOWN.sub(r"\\\1", " ".join(text.split()))


def defused(text: str) -> str:
    """The model's own text with what a Markdown window would act on by itself made literal: an image
    (`![x](https://...)`) or raw HTML (`<img src=...>`) is fetched as soon as it is shown, so a page that talks the
    model into writing one could send what the conversation holds to its server. Backslashes, "<" and "![" are
    escaped; everything else (citations, emphasis, links a reader must click) is left as the model wrote it."""
    return text.replace("\\", "\\\\").replace("<", "\\<").replace("![", "!\\[")


class Defuser:
    """defused() over a stream: a piece that ends in "!" keeps it until the next piece, which may begin with "["."""

    def __init__(self) -> None:
        self.held = ""

    def feed(self, piece: str) -> str:
        """The piece, defused, less a trailing "!" held back."""
        text = self.held + piece
        self.held = "!" if text.endswith("!") else ""
        return defused(text[: len(text) - len(self.held)])

    def flush(self) -> str:
        """What was held back."""
        held, self.held = self.held, ""
        return held


def sources_markdown(sources: list[Source]) -> str:
    """The cited sources as a Markdown list under SOURCES_HEADING, each under its citation number; "" for none."""
    if not sources:
        return ""
    lines = []
    for s in sources:
        title = markdown_text(s.title or s.id)
        if s.url.startswith(("http://", "https://")):
            # every character that could end the link or start new Markdown (white space, controls, brackets,
            # "!" of an image a chat window loads by itself) is percent-encoded; "%" stays, for escapes it holds
            url = quote(s.url, safe=":/?#@$&'*+,;=%~-._")
            lines.append(f"- [{s.n}] [{title}]({url})")
        else:
            lines.append(f"- [{s.n}] {title} ({markdown_text(s.id)})")
    return f"\n\n{SOURCES_HEADING}\n\n" + "\n".join(lines)


def reply_text(answer: Answer) -> str:
    """The whole reply of a completion: the checked answer with its citations, then the sources list."""
    return defused(answer.answer) + sources_markdown(answer.sources)


def searching_again(query: str) -> str:
    """The stream's line between a draft answer that no source supported and the next step's answer."""
    return "\n\n" + _AGAIN.format(markdown_text(query)) + "\n\n"


def checked_answer(answer: Answer, streamed: str) -> str:
    """What the stream adds at the end when the checked answer is not what it streamed: the citations added to
    it, or else (a citation removed, a label dropped) the whole checked answer on a line of its own, as the
    terminal shows it; "" when it is the same."""
    said = streamed.strip()
    if " ".join(answer.answer.split()) == " ".join(said.split()):
        return ""
    if said and answer.answer.startswith(said):
        return answer.answer[len(said) :]
    return f"\n\n{_CHECKED}{answer.answer}"


def earlier_answer(content: str) -> str:
    """An earlier answer as the assistant gave it, from a reply of this server: the sources list, drafts and the
    streamed text a checked answer replaced are dropped (another client's text comes back as it is)."""
    text = content.rstrip()
    head, heading, tail = text.rpartition(f"\n{SOURCES_HEADING}\n")
    if heading and all(_SOURCE_LINE.match(line) for line in tail.strip().splitlines()):
        text = head.rstrip()
    last = max([m.end() for m in _AGAIN_LINE.finditer(text)], default=0)
    checked = text.rfind(f"\n{_CHECKED}", last)
    start = checked + 1 + len(_CHECKED) if checked >= 0 else last
    return text[start:].strip()


# --- out ------------------------------------------------------------------------------------------------------


def usage(answer: Answer) -> dict[str, int]:
    """OpenAI's `usage`: the tokens of every generation the answer took, summed."""
    prompt, completion = answer.usage["prompt_tokens"], answer.usage["completion_tokens"]
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


@dataclass(frozen=True)
class Reply:
    """The identity every chunk or completion of one reply shares."""

    model: str
    id: str
    created: int

    @classmethod
    def new(cls, model: str) -> Reply:
        """A reply with a fresh id, created now."""
        return cls(model, f"chatcmpl-{uuid.uuid4().hex}", int(time.time()))

    def completion(self, answer: Answer) -> dict[str, Any]:
        """The non-streaming response."""
        message = {"role": "assistant", "content": reply_text(answer)}
        return {
            **self._head("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage(answer),
            EXTRA: answer.to_dict(),
        }

    def chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        """One SSE event with one choice's delta."""
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return sse({**self._head("chat.completion.chunk"), "choices": [choice], **extra})

    def text(self, text: str) -> bytes:
        """A piece of the answer's text."""
        return self.chunk({"content": text})

    def finish(self, answer: Answer) -> bytes:
        """The finishing chunk: the sources list, `usage` and the `ask --json` object."""
        return self.chunk(
            {"content": sources_markdown(answer.sources)}, "stop", usage=usage(answer), **{EXTRA: answer.to_dict()}
        )

    def usage_only(self, answer: Answer) -> bytes:
        """OpenAI's last chunk under `stream_options.include_usage`: no choices, the usage."""
        return sse({**self._head("chat.completion.chunk"), "choices": [], "usage": usage(answer)})

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def sse(data: dict[str, Any] | str) -> bytes:
    """One server-sent event: `data: ...` and a blank line."""
    body = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {body}\n\n".encode()


DONE = sse("[DONE]")
KEEPALIVE = b": waiting\n\n"  # an SSE comment: clients skip it; a proxy sees the connection alive


def error(message: str, kind: str = "invalid_request_error", code: str | None = None) -> dict[str, Any]:
    """OpenAI's error body."""
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def models_list() -> dict[str, Any]:
    """GET /v1/models."""
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "search-assistant"} for name in MODELS]
    return {"object": "list", "data": data}
