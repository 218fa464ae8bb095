"""OpenAI-compatible HTTP backend: any server with a streaming `/chat/completions` (llama.cpp's
`llama-server`, llama-cpp-python's server, vLLM, Ollama), spoken to with httpx directly.

    python -m llama_cpp.server --model FILE --chat_format chatml --port 8000
    OpenAIBackend("http://127.0.0.1:8000/v1", native_tools=False)

Tools go one of two ways, chosen by `native_tools`, because a server that accepts `tools` and then ignores
them cannot be told apart from a model that chose not to call one:

- `native_tools=True` (default; vLLM, `llama-server --jinja`, Ollama, OpenAI): tools travel in the request's
  `tools` field and are not rendered into the prompt. A forced call over one tool is sent as a *named*
  `tool_choice`, the one form every server above honours (llama-cpp-python turns it into a grammar over the
  tool's parameters); over several tools as `"required"`. Streamed `delta.tool_calls` become `ToolCall`s.
- `native_tools=False` (llama-cpp-python's server with any chat format but functionary, i.e. chatml or the
  GGUF's own template): that server accepts `tools` but shows them to no one, ignores `"auto"`/`"required"`
  and drops tool-role messages. Here the prompt is prepared exactly as the llama.cpp backend does
  (`toolcalls.prepare`: tools in the system prompt, tool results as user turns) and a forced call becomes a
  JSON-schema constraint (`call_schema`).

Either way the answer text goes through `stream_with_tools`, so a model that writes its call as JSON in the
content is still understood; calls the server itself reports win over anything parsed from text.

Token counts (the loop's budgets ask for dozens per question) come from a local copy of the vocabulary when
one is known, a GGUF of the served model (`tokenizer=`; `load_model` passes the preset's file when it is
here), else from the server's tokenize endpoint, each distinct text asked once and kept in an LRU cache.

Token log-probabilities (an answer's confidence, assistant/confidence.py) are asked for with `logprobs: true`;
a server that does not send them gives a Completion without them, and one that refuses the field is asked again
without it, once, and never again.

JSON schemas are sent as OpenAI's `{"type": "json_schema", ...}`. llama-cpp-python only knows
`{"type": "json_object", "schema": ...}` and answers the other with HTTP 500, so after any refusal of a
request that carried a schema the backend retries once in that form and, if it is accepted, keeps using it.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from assistant.errors import AssistantError
from assistant.jsonl import SURROGATE_ESCAPE, valid_text
from assistant.models.base import Completion, GenerationOptions, Message, TokenLogprob, ToolCall, Usage
from assistant.models.special import neutralise
from assistant.models.toolcalls import parse_tool_calls, prepare, stream_with_tools, tool_names

_START_HINT = "is the server running? start one with `python -m llama_cpp.server --model FILE`"
# Token-count endpoints, tried in turn until one answers: (path under the server root, body key, reader).
_TOKENIZE_ROUTES: list[tuple[str, str, Any]] = [
    ("/tokenize", "content", lambda r: len(r["tokens"])),  # llama.cpp's llama-server
    ("/extras/tokenize/count", "input", lambda r: r["count"]),  # llama-cpp-python's server
]
_PER_MESSAGE_TOKENS = 4  # what a chat template adds around each message (role markers, separators)
_COUNT_CACHE = 4096  # distinct texts whose server counts are kept: a few questions' passages, prompts, history


def _one_line(text: Any, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe(error: Any) -> str:
    """An error payload on one line: OpenAI's `{"error": {"message": ...}}`, FastAPI's `{"detail": ...}`."""
    if isinstance(error, dict):
        error = error.get("error", error.get("detail", error))
    if isinstance(error, dict):
        error = error.get("message", error)
    return _one_line(error)


def _error_message(response: httpx.Response) -> str:
    """The server's own words for a failed request."""
    try:
        return _describe(response.json())
    except ValueError:
        return _one_line(response.text or response.reason_phrase)


def _load_vocab(path: str | Path) -> Any:
    """The vocabulary of a GGUF file (no weights), or None where llama-cpp-python is not installed."""
    try:
        import llama_cpp
    except ImportError:
        return None  # the server counts instead: slower, not wrong
    try:
        return llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    except ValueError as e:  # llama-cpp-python raises ValueError for unreadable files
        raise AssistantError(f"cannot read the vocabulary of {path}: not a valid GGUF model ({e})") from None


def _wire(message: Message) -> dict[str, Any]:
    """A message in OpenAI's wire format, its content's control strings broken."""
    # The server renders the chat template and tokenizes the whole prompt itself, parsing special tokens in
    # content too (llama.cpp, vLLM), so a page's `<|im_end|><|im_start|>system` would be a real turn. Unlike the
    # local backends nothing here can keep content apart, so the control strings are broken before they leave.
    out: dict[str, Any] = {"role": message.role, "content": neutralise(message.content)}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id or f"call_{i}",
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for i, c in enumerate(message.tool_calls)
        ]
    if message.tool_call_id is not None:
        out["tool_call_id"] = message.tool_call_id
    return out


class OpenAIBackend:
    """A model behind an OpenAI-compatible chat-completions server."""

    supports_tools = True
    supports_schema = True  # response_format with a JSON schema
    grammar_from_schema = False

    def __init__(
        self,
        base_url: str,
        model: str = "default",
        api_key: str | None = None,
        timeout: float = 120.0,
        context_length: int = 4096,
        *,
        native_tools: bool = True,
        tokenizer: str | Path | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.root = self.base_url.removesuffix("/v1")
        self.name = self.model = model
        self.context_length = context_length
        self.native_tools = native_tools
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)))
        self._schema_form = "json_schema"  # becomes "json_object" once a server refuses the OpenAI form
        self._logprobs = True  # becomes False once a server refuses `logprobs`
        self._tokenize_routes = list(_TOKENIZE_ROUTES)  # narrowed to the one that works, or to none
        self._vocab = _load_vocab(tokenizer) if tokenizer else None
        self.counts_tokens_locally = self._vocab is not None  # else the server counts, once per distinct text
        self._counts: OrderedDict[str, int] = OrderedDict()

    def count_tokens(self, text: str) -> int:
        """Tokens `text` costs: counted locally when the vocabulary is here, else asked of the server once."""
        if self._vocab is not None:
            return len(self._vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        if text in self._counts:
            self._counts.move_to_end(text)
            return self._counts[text]
        count = self._server_count(text)
        if count is not None:
            self._counts[text] = count
            if len(self._counts) > _COUNT_CACHE:
                self._counts.popitem(last=False)
            return count
        return len(text) // 4 + 1

    def _server_count(self, text: str) -> int | None:
        """The server's count of `text`, or None where it has no tokenize endpoint or cannot be reached."""
        for route in list(self._tokenize_routes):
            path, key, read = route
            try:
                response = self.client.post(self.root + path, json={key: text})
                response.raise_for_status()
                count = int(read(response.json()))
            except httpx.TransportError:
                return None  # unreachable right now: estimate this once, ask again next time
            except (httpx.HTTPStatusError, ValueError, KeyError, TypeError):
                self._tokenize_routes.remove(route)
                continue
            self._tokenize_routes = [route]
            return count
        return None

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        """Yield answer text deltas, then one Completion (tool calls, tokens and timings)."""
        native: list[tuple[list[ToolCall], str | None]] = []
        for item in stream_with_tools(self._raw(messages, options, native), options):
            if isinstance(item, Completion) and native:  # the server's own calls beat call-like text
                item.tool_calls, item.tool_error = native[0]
            yield item

    def _request(self, messages: list[Message], options: GenerationOptions) -> tuple[dict[str, Any], list[Message]]:
        sent, schema = (messages, options.json_schema) if self.native_tools else prepare(messages, options)
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [_wire(m) for m in sent],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": options.max_tokens,
            "temperature": options.temperature,
        }
        if self._logprobs:
            body["logprobs"] = True
        if options.stop:
            body["stop"] = options.stop
        if options.seed is not None:
            body["seed"] = options.seed
        if self.native_tools and options.tools and options.tool_choice != "none":
            body["tools"] = options.tools
            body["tool_choice"] = options.tool_choice
            if options.tool_choice == "required" and len(options.tools) == 1:
                body["tool_choice"] = {"type": "function", "function": {"name": tool_names(options.tools)[0]}}
        if schema is not None:
            body["response_format"] = self._response_format(schema, self._schema_form)
        return body, sent

    @staticmethod
    def _response_format(schema: dict[str, Any], form: str) -> dict[str, Any]:
        if form == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}

    def _raw(
        self,
        messages: list[Message],
        options: GenerationOptions,
        native: list[tuple[list[ToolCall], str | None]],
    ) -> Iterator[str | Completion]:
        body, sent = self._request(messages, options)
        start = time.perf_counter()
        first: float | None = None
        parts: list[str] = []
        slots: dict[int, dict[str, str]] = {}
        usage: Usage | None = None
        logprobs: list[TokenLogprob] | None = None  # stays None when the server sends none
        finish, deltas = "stop", 0
        for chunk in self._events(body):
            if chunk.get("usage"):
                usage = Usage(chunk["usage"].get("prompt_tokens", 0), chunk["usage"].get("completion_tokens", 0))
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                text, calls = delta.get("content"), delta.get("tool_calls") or []
                if (text or calls) and first is None:
                    first = time.perf_counter()
                deltas += bool(text or calls)
                if text:
                    parts.append(text)
                    yield text
                for call in calls:
                    slot = slots.setdefault(call.get("index") or 0, {"id": "", "name": "", "arguments": ""})
                    fn = call.get("function") or {}
                    slot["id"] = slot["id"] or call.get("id") or ""
                    # Names come whole: once (OpenAI, vLLM) or repeated in every chunk (llama-cpp-python).
                    slot["name"] = slot["name"] or fn.get("name") or ""
                    slot["arguments"] += fn.get("arguments") or ""
                finish = choice.get("finish_reason") or finish
                scored = (choice.get("logprobs") or {}).get("content") or []
                if scored:
                    logprobs = (logprobs or []) + [TokenLogprob(t["token"], float(t["logprob"])) for t in scored]
        end = time.perf_counter()
        first = first or end
        if slots:
            native.append(self._native_calls(list(slots.values()), options))
        if usage is None:
            # The server sent no usage chunk (llama-cpp-python ignores `stream_options`): approximate. The
            # prompt is counted without its chat template (a fixed cost per message stands in for it), and
            # each streamed delta is taken as one token, which is how these servers stream.
            prompt = "\n".join(m.content for m in sent)
            usage = Usage(self.count_tokens(prompt) + _PER_MESSAGE_TOKENS * len(sent), deltas)
        yield Completion(
            text="".join(parts),
            usage=usage,
            finish_reason=finish,
            prefill_s=first - start,
            decode_s=end - first,
            logprobs=logprobs,
        )

    @staticmethod
    def _native_calls(slots: list[dict[str, str]], options: GenerationOptions) -> tuple[list[ToolCall], str | None]:
        """Streamed call fragments as ToolCalls, checked and leniently parsed like calls found in text."""
        calls: list[ToolCall] = []
        for slot in slots:
            blob = json.dumps({"name": slot["name"], "arguments": slot["arguments"] or "{}"})
            found, error = parse_tool_calls(blob, tool_names(options.tools))
            if error:
                return [], error
            calls += [ToolCall(c.name, c.arguments, slot["id"] or f"call_{len(calls)}") for c in found]
        return calls, None

    def _events(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The decoded SSE chunks of one streamed request, with one retry for a refused schema form."""
        url = f"{self.base_url}/chat/completions"
        try:
            for attempt in range(2):
                with self.client.stream("POST", url, json=body) as response:
                    if response.is_error:
                        response.read()
                        if attempt == 0 and response.status_code not in (401, 403) and self._retry_form(body, response):
                            continue
                        hint = "check the API key" if response.status_code in (401, 403) else "see the server's log"
                        raise AssistantError(
                            f"{url} answered HTTP {response.status_code}: {_error_message(response)} — {hint}"
                        )
                    if attempt == 1:  # the form the server accepted is kept for the next requests
                        self._schema_form = body.get("response_format", {}).get("type", self._schema_form)
                        self._logprobs = "logprobs" in body
                    yield from self._sse(response, url)
                    return
        except httpx.ConnectError:
            raise AssistantError(f"cannot connect to {url} — {_START_HINT}") from None
        except httpx.TimeoutException:
            raise AssistantError(
                f"{url} did not answer within {self.timeout:g} s — raise the timeout or use a smaller model"
            ) from None
        except httpx.TransportError as e:
            raise AssistantError(
                f"the connection to {url} broke ({e or type(e).__name__}) — did the server crash? see its log"
            ) from None

    def _retry_form(self, body: dict[str, Any], response: httpx.Response) -> bool:
        """Change a refused request to the forms some servers need (a schema as `json_object`, no `logprobs`);
        whether there was anything to change. `logprobs` is dropped when the server names it, or when nothing
        else is left to blame."""
        fmt = body.get("response_format", {})
        changed = fmt.get("type") == "json_schema"
        if changed:
            body["response_format"] = self._response_format(fmt["json_schema"]["schema"], "json_object")
        if body.get("logprobs") and (not changed or "logprob" in response.text):
            del body["logprobs"]
            changed = True
        return changed

    @staticmethod
    def _sse(response: httpx.Response, url: str) -> Iterator[dict[str, Any]]:
        finished = False
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue  # blank separators, `event:`/`id:` fields, `: ping` comments
            data = line[5:].strip()
            if data == "[DONE]":
                return
            try:
                chunk = json.loads(data)
                chunk = valid_text(chunk) if SURROGATE_ESCAPE.search(data) else chunk
            except json.JSONDecodeError:
                chunk = None
            if not isinstance(chunk, dict):
                raise AssistantError(
                    f"malformed stream from {url}: {data[:80]!r} is not a JSON object — "
                    "is this an OpenAI-compatible server?"
                )
            if "error" in chunk:
                raise AssistantError(f"{url} failed mid-answer: {_describe(chunk)} — see the server's log")
            finished = finished or any(c.get("finish_reason") for c in chunk.get("choices") or [])
            yield chunk
        if not finished:
            raise AssistantError(f"the stream from {url} ended before the answer did — see the server's log")

    def close(self) -> None:
        """Close the HTTP connections."""
        self.client.close()
