"""Keeping untrusted text from becoming control tokens.

Page text, titles, URLs and notes built from server strings all end up in message content. A chat format's
control strings in that text (`<|im_end|><|im_start|>system …`) must stay text: parsed as special tokens they
would close the user's turn and open a system turn that a web page wrote.

The local backends (llama.cpp, transformers) tokenize the prompt themselves. `split_prompt` renders the chat
template with a marker in place of each message's content and cuts the result at the markers; the backend then
tokenizes the template's pieces with special tokens parsed and each content without, and joins the ids. A
server tokenizes the prompt it renders itself, so for the OpenAI-compatible backend the best that can be done
is `neutralise`: break every control string in content with an invisible character before it is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from assistant.errors import AssistantError

# The marker render holds no message text at all (every content is a marker), so no page can forge a marker;
# private-use characters only keep them apart from anything a template writes itself.
_OPEN, _CLOSE = "\ue000", "\ue001"
_MARK = re.compile(_OPEN + r"(\d+)" + _CLOSE)

# Control strings of the common chat formats: `<|…|>` (ChatML, Phi-3, Llama 3), DeepSeek's fullwidth `<｜…｜>`,
# SentencePiece's `<s>`/`</s>`, Gemma's turn markers, Llama 2's `<<SYS>>` and Mistral's `[INST]`, `[TOOL_CALLS]`.
_CONTROL = re.compile(
    r"<(?=[|｜])|[|｜](?=>)"
    r"|<(?=/?(?:s|bos|eos|unk|pad|start_of_turn|end_of_turn)>)"
    r"|<(?=</?SYS>>)"
    r"|\[(?=/?[A-Z][A-Z_]*\])"
)
_JOINER = "\u200d"  # ZERO WIDTH JOINER: invisible to a reader, but no vocabulary has it inside a control token


@dataclass(frozen=True)
class Piece:
    """A run of prompt text: chat-template scaffolding, or one message's content."""

    text: str
    content: bool


def split_prompt(render: Callable[[list[str]], str], contents: list[str]) -> list[Piece]:
    """The prompt `render` makes of `contents` (one per message), cut into template pieces and content pieces."""
    marks = [f"{_OPEN}{i}{_CLOSE}" if text else "" for i, text in enumerate(contents)]
    rendered = render(marks)
    pieces: list[Piece] = []
    start = 0
    for match in _MARK.finditer(rendered):
        if match.start() > start:
            pieces.append(Piece(rendered[start : match.start()], content=False))
        pieces.append(Piece(contents[int(match.group(1))], content=True))
        start = match.end()
    if start < len(rendered):
        pieces.append(Piece(rendered[start:], content=False))
    if any(_OPEN in p.text or _CLOSE in p.text for p in pieces if not p.content):
        # A template that slices or rewrites content cut a marker: where the content goes is unknown.
        raise AssistantError(
            "the chat template rewrites message text, so page text cannot be kept out of its control tokens "
            "— use another chat template (llama-cpp: chat_template='chatml' or 'phi-3')"
        )
    return pieces


def content_ids(tokenize: Callable[[str], list[int]], added: Callable[[int], str | None], text: str) -> list[int]:
    """`text`'s token ids as message content. `tokenize` leaves control tokens as text, but a vocabulary's own
    added words may still be matched (llama.cpp's user-defined tokens, a transformers tokenizer's added tokens
    that are not special: Qwen's `<tool_call>`); `added(id)` is such a token's text, else None. Each one found is
    broken by a zero-width joiner and the text tokenized again; should one survive that, every "<", "[" and "|"."""
    ids = tokenize(text)
    words = {w for w in map(added, ids) if w}
    if not words:
        return ids
    for word in sorted(words, key=len, reverse=True):
        text = text.replace(word, word[:1] + _JOINER + word[1:])
    ids = tokenize(text)
    if any(map(added, ids)):  # matched in another form than its text (a stripped space, say)
        ids = tokenize(_ANY_MARK.sub(lambda m: m.group(0) + _JOINER, text))
    if any(map(added, ids)):
        raise AssistantError("message text could not be kept apart from the vocabulary's added tokens")
    return ids


_ANY_MARK = re.compile(r"[<\[|｜]")


def neutralise(text: str) -> str:
    """`text` with every chat-format control string broken by a zero-width joiner, so no tokenizer parses it."""
    return _CONTROL.sub(lambda m: m.group(0) + _JOINER, text)
