"""llama.cpp backend (llama-cpp-python): GGUF models on the CPU, the default.

The chat format comes from the GGUF's own template (`tokenizer.chat_template`); Phi-3's format is built in for
files that lack one. Prompts are rendered and tokenized here, so prompt-token counts are exact and the KV cache
is reused across steps that share a prefix. Only the template's own text is parsed for special tokens; message
content never is (see `assistant.models.special`), so a page cannot write `<|im_end|>` and end a turn.
JSON-schema constraints become llama.cpp grammars. Each generated token's log-probability is taken at sampling
time (`TokenScores`), so an answer's confidence costs no extra memory or prefill.
"""

from __future__ import annotations

import codecs
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError, BadInput, MissingExtra
from assistant.models.base import Completion, GenerationOptions, Message, TokenLogprob, Usage
from assistant.models.special import Piece, content_ids, split_prompt
from assistant.models.toolcalls import prepare, stream_with_tools

# Phi-3-mini-4k-instruct's template: <|user|>\n…<|end|>\n<|assistant|>\n (system folded in as its own turn).
PHI3_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEMPLATES = {"phi-3": PHI3_TEMPLATE, "chatml": CHATML_TEMPLATE}


def _import_llama() -> Any:
    import assistant  # noqa: F401  (sets the OpenMP spin policy before llama_cpp loads OpenMP)

    try:
        import llama_cpp
    except ImportError:
        raise MissingExtra("llama-cpp-python", "llama-cpp") from None
    return llama_cpp


class TokenScores:
    """A logits processor that keeps the log-probability of each token llama.cpp samples.

    It sees the logits of every step over the whole vocabulary, before grammar and sampler, and learns the token
    chosen at a step when the next step comes (it is then the last token evaluated). One step's logits are held
    at a time: llama-cpp-python's own `logprobs` needs `logits_all=True`, which keeps n_ctx x vocab floats (about
    2.5 GB for Qwen at 4,096) and slows prefill. The last token sampled is never evaluated, so its probability is
    not known: it is the end-of-turn token, or one cut by a stop string or max_tokens."""

    def __init__(self) -> None:
        self.tokens: list[tuple[int, float]] = []  # (token id, log-probability), in the order generated
        self._pending: Any = None  # the logits of the step whose token is not known yet

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import numpy as np

        if self._pending is not None:
            logits, self._pending = self._pending, None
            token, top = int(input_ids[-1]), logits.max()
            self.tokens.append((token, float(logits[token] - top - np.log(np.exp(logits - top).sum()))))
        self._pending = np.array(scores, dtype=np.float64)  # a copy: llama.cpp reuses its buffer
        return scores


class LlamaCppBackend:
    """A GGUF model through llama-cpp-python."""

    supports_tools = True
    supports_schema = True
    grammar_from_schema = True
    counts_tokens_locally = True

    def __init__(
        self,
        path: str | Path,
        *,
        n_ctx: int = 4096,
        threads: int | None = None,
        chat_template: str | None = None,
        name: str | None = None,
        seed: int = 0,
    ):
        path = Path(path).expanduser()
        if not path.is_file():
            raise BadInput(f"model file not found: {path} — run `assistant models` to see what is present")
        llama_cpp = _import_llama()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        threads = threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                seed=seed,
                verbose=False,
            )
        except ValueError as e:  # llama-cpp-python raises ValueError for unreadable files
            raise BadInput(f"cannot load {path}: not a valid GGUF model ({e})") from None
        self.name = name or path.stem
        self.path = path
        self.context_length = self.llm.n_ctx()
        meta = self.llm.metadata
        template = TEMPLATES.get(chat_template or "", chat_template) or meta.get("tokenizer.chat_template")
        if not template:
            template = PHI3_TEMPLATE if "phi-3" in (meta.get("general.name", "") + path.name).lower() else None
        if not template:
            raise BadInput(f"{path.name} has no chat template — pass one with chat_template='chatml'|'phi-3'")
        self.eos_token_id = self.llm.token_eos()
        eos_text = self._token_text(self.eos_token_id)
        self.formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=eos_text,
            bos_token=self._token_text(self.llm.token_bos()),
            stop_token_ids=[self.eos_token_id],
        )
        self.stop = [eos_text]  # the stop strings Jinja2ChatFormatter gives for every prompt
        self._added_kinds = llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED | llama_cpp.LLAMA_TOKEN_ATTR_CONTROL

    def _token_text(self, token: int) -> str:
        return self.llm._model.token_get_text(token) if token >= 0 else ""

    def render(self, messages: list[Message]) -> str:
        """The prompt text the chat template makes of `messages` (generation prompt included)."""
        return "".join(piece.text for piece in self._pieces(messages))

    def prompt_ids(self, messages: list[Message]) -> list[int]:
        """The prompt's token ids: the template's text is parsed for special tokens, message content never."""
        ids: list[int] = []
        for piece in self._pieces(messages):
            # No BOS is added: templates that want one write `bos_token` themselves.
            ids += self._content_ids(piece.text) if piece.content else self._tokenize(piece.text, special=True)
        return ids

    def _tokenize(self, text: str, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special)

    def _content_ids(self, text: str) -> list[int]:
        """Message content's ids: special=False leaves control tokens as text, but llama.cpp still matches a
        vocabulary's user-defined tokens (Qwen2.5's `<tool_call>`), which `content_ids` breaks."""
        return content_ids(self._tokenize, self._added, text)

    def _added(self, token: int) -> str | None:
        """The text of a user-defined or control token, else None."""
        return self._token_text(token) if self.llm._model.token_get_attr(token) & self._added_kinds else None

    def _pieces(self, messages: list[Message]) -> list[Piece]:
        def render(contents: list[str]) -> str:
            turns: list[Any] = [{"role": m.role, "content": c} for m, c in zip(messages, contents, strict=True)]
            return str(self.formatter(messages=turns).prompt)

        return split_prompt(render, [m.content for m in messages])

    def count_tokens(self, text: str) -> int:
        """Tokens `text` costs in this vocabulary, as message content (control strings in it stay text)."""
        return len(self._content_ids(text))

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        """Yield answer text deltas, then one Completion (tool calls parsed, tokens and timings counted)."""
        return stream_with_tools(self._raw(messages, options), options)

    def _raw(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        plain, schema = prepare(messages, options)
        tokens = self.prompt_ids(plain)
        budget = self.context_length - len(tokens)
        if budget < 16:
            raise AssistantError(
                f"the prompt ({len(tokens)} tokens) does not fit the context window ({self.context_length}); "
                "lower --context-tokens or raise --n-ctx"
            )
        grammar = None
        if schema is not None:
            from llama_cpp import LlamaGrammar

            try:
                grammar = LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
            except Exception as e:  # llama.cpp's converter raises plain exceptions for unsupported schemas
                raise AssistantError(f"the JSON schema cannot be turned into a grammar: {e}") from None
        from llama_cpp import LogitsProcessorList

        scores = TokenScores()
        start = time.perf_counter()
        first: float | None = None
        finish, produced = "stop", 0
        for chunk in self.llm.create_completion(
            tokens,
            max_tokens=min(options.max_tokens, budget),
            temperature=options.temperature,
            stop=self.stop + options.stop,
            grammar=grammar,
            stream=True,
            seed=options.seed if options.seed is not None else 0,
            logits_processor=LogitsProcessorList([scores]),
        ):
            choice = chunk["choices"][0]
            if first is None:
                first = time.perf_counter()
            produced += 1
            if choice.get("text"):
                yield choice["text"]
            finish = choice.get("finish_reason") or finish
        end = time.perf_counter()
        first = first or end
        completion_tokens = max(0, self.llm.n_tokens - len(tokens)) or produced
        yield Completion(
            text="",
            usage=Usage(len(tokens), completion_tokens),
            finish_reason=finish,
            prefill_s=first - start,
            decode_s=end - first,
            logprobs=self._token_logprobs(scores.tokens),
        )

    def _token_logprobs(self, tokens: list[tuple[int, float]]) -> list[TokenLogprob]:
        """The scored tokens with their text (a character split over tokens goes to the one that completes it)."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return [TokenLogprob(decoder.decode(self.llm.detokenize([token])), logprob) for token, logprob in tokens]

    def close(self) -> None:
        """Free the model."""
        self.llm.close()
