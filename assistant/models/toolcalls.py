"""Tool calls in model text: rendering tools into a prompt, grammars for forced calls, and parsing calls back.

Small models write calls in many shapes: a bare JSON object, JSON in a ``` fence (Qwen-Coder), Hermes-style
`<tool_call>…</tool_call>`, single-quoted pseudo-JSON. `stream_with_tools` wraps any backend's raw text
stream: answer text streams through untouched, text that starts like a call is held back and parsed. It also
bounds the stream: a backend that never stops (a server ignoring `max_tokens`, a stream with no end token) is
closed after `max_tokens` pieces plus a small margin and ends in a Completion with `finish_reason="max_tokens"`.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

from assistant.models.base import Completion, GenerationOptions, Message, ToolCall, Usage

_CALL_OPENERS = ("{", "```", "<tool_call>", "[{")
_FENCE = re.compile(r"```(?:json|tool_call|python)?\s*(.*?)```", re.S)
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)


def tool_names(tools: list[dict[str, Any]]) -> list[str]:
    """The names of OpenAI-style tool specs."""
    return [t["function"]["name"] for t in tools]


def render_tools(tools: list[dict[str, Any]]) -> str:
    """A compact system-prompt section that teaches the call format (few tokens: prompts are the cost)."""
    lines = [
        "To use a tool, reply with only a JSON object such as "
        '{"name": "TOOL", "arguments": {...}} and nothing else. Tools:'
    ]
    for tool in tools:
        fn = tool["function"]
        props = fn.get("parameters", {}).get("properties", {})
        args = ", ".join(f"{k}: {v.get('type', 'any')}" for k, v in props.items())
        lines.append(f"- {fn['name']}({args}): {fn.get('description', '').strip()}")
    return "\n".join(lines)


def call_schema(tools: list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema that only valid calls to `tools` satisfy, for grammar-constrained decoding."""
    variants = [
        {
            "type": "object",
            "properties": {
                "name": {"type": "string", "enum": [t["function"]["name"]]},
                "arguments": t["function"].get("parameters", {"type": "object"}),
            },
            "required": ["name", "arguments"],
        }
        for t in tools
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def looks_like_call(text: str) -> bool:
    """Whether text (stripped) opens the way a tool call does."""
    head = text.lstrip()
    return any(head.startswith(o) or o.startswith(head) for o in _CALL_OPENERS) if head else True


def _loads(blob: str) -> Any:
    blob = blob.strip()
    try:
        return json.loads(blob)
    except json.JSONDecodeError:
        pass
    try:  # single quotes, True/False/None: what small models write when they imitate Python
        return ast.literal_eval(blob)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        pass
    start, end = blob.find("{"), blob.rfind("}")
    if 0 <= start < end and (start, end) != (0, len(blob) - 1):
        return _loads(blob[start : end + 1])
    raise ValueError("not valid JSON")


def parse_tool_calls(text: str, names: list[str]) -> tuple[list[ToolCall], str | None]:
    """Parse the calls in `text`; returns (calls, error). No call and no error means plain answer text."""
    candidates = _TAGGED.findall(text) or _FENCE.findall(text) or [text]
    calls: list[ToolCall] = []
    for blob in candidates:
        if not blob.strip().startswith(("{", "[")):
            continue
        try:
            data = _loads(blob)
        except ValueError:
            return [], f"could not parse the tool call {blob.strip()[:120]!r} as JSON"
        for item in data if isinstance(data, list) else [data]:
            if not isinstance(item, dict):
                return [], "a tool call must be a JSON object with `name` and `arguments`"
            fn = item.get("function", item)  # OpenAI-shaped {"function": {...}} too
            name = fn.get("name") or fn.get("tool")
            args = fn.get("arguments", fn.get("parameters", {}))
            if isinstance(args, str):
                try:
                    args = _loads(args)
                except ValueError:
                    return [], f"the arguments of {name} are not valid JSON"
            if name not in names:
                return [], f"unknown tool {name!r}; the tools are: {', '.join(names)}"
            if not isinstance(args, dict):
                return [], f"the arguments of {name} must be a JSON object"
            calls.append(ToolCall(name=name, arguments=args, id=f"call_{len(calls)}"))
    return calls, None


def stream_with_tools(raw: Iterator[str | Completion], options: GenerationOptions) -> Iterator[str | Completion]:
    """Wrap a raw text stream: pass answer text through, hold back and parse anything shaped like a call."""
    names = tool_names(options.tools) if options.tool_choice != "none" else []
    parse = bool(names)
    held: list[str] = []
    holding = parse
    text_parts: list[str] = []
    pieces, chars = 0, 0
    max_pieces, max_chars = runaway_limits(options.max_tokens)
    for item in raw:
        if not isinstance(item, Completion) and item:
            pieces, chars = pieces + 1, chars + len(item)
            if pieces > max_pieces or chars > max_chars:
                close = getattr(raw, "close", None)
                if close is not None:
                    close()  # ends the backend's generator: its HTTP stream or decoding loop stops
                item = Completion("", usage=Usage(0, pieces - 1), finish_reason="max_tokens")
        if isinstance(item, Completion):
            text = "".join(text_parts)
            if parse and looks_like_call(text) and text.strip():
                calls, error = parse_tool_calls(text, names)
                if calls or error:
                    item.tool_calls, item.tool_error = calls, error
                    item.text = text
                    yield item
                    return
            if holding and held:
                yield "".join(held)
            item.text = text
            yield item
            return
        text_parts.append(item)
        if not holding:
            yield item
            continue
        held.append(item)
        if not looks_like_call("".join(held)):
            holding = False
            yield "".join(held)
            held.clear()
    raise RuntimeError("raw stream ended without a Completion")


def runaway_limits(max_tokens: int) -> tuple[int, int]:
    """(pieces, characters) after which a stream is cut. A backend streams one token per piece or fewer, and
    stops at max_tokens itself, so a well-behaved one never reaches this; the margin allows for servers that
    split a token's bytes over two deltas. No token is 64 characters long on average."""
    pieces = max_tokens + max(8, max_tokens // 8)
    return pieces, pieces * 64


def prepare(messages: list[Message], options: GenerationOptions) -> tuple[list[Message], dict[str, Any] | None]:
    """Plain-text messages for any chat template, and the JSON schema to constrain decoding to (or None).

    Tools go into the system prompt (`render_tools`); tool results become user turns and earlier calls become
    JSON text, so that templates without a tool role still work. A forced call decodes against `call_schema`.
    """
    out: list[Message] = []
    for m in messages:
        if m.role == "tool":
            out.append(Message("user", f"Tool result:\n{m.content}"))
        elif m.role == "assistant" and m.tool_calls:
            calls = [{"name": c.name, "arguments": c.arguments} for c in m.tool_calls]
            out.append(Message("assistant", json.dumps(calls[0] if len(calls) == 1 else calls)))
        else:
            out.append(Message(m.role, m.content))
    schema = options.json_schema
    if options.tools and options.tool_choice != "none":
        section = render_tools(options.tools)
        if out and out[0].role == "system":
            out[0] = Message("system", f"{out[0].content}\n\n{section}")
        else:
            out.insert(0, Message("system", section))
        if options.tool_choice == "required":
            schema = call_schema(options.tools)
    return out, schema
