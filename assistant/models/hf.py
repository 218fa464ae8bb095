"""Hugging Face transformers backend: a hub id or a local folder, 4-bit NF4 on CUDA through bitsandbytes.

    from assistant.models.hf import TransformersBackend
    model = TransformersBackend("microsoft/Phi-3-mini-4k-instruct")   # or TransformersBackend("/models/phi3")

The prompt is the tokenizer's own chat template; only its own text is parsed for special tokens, message content
never is (see `assistant.models.special`), so a page cannot write `<|end|>` and end a turn. Decoding is a
manual token loop over the KV cache in the caller's thread: faster than `generate` with a
`TextIteratorStreamer` in a thread (82 vs 51 tok/s on a 50M toy on CPU; the thread itself is most of the gap),
and it stops when the consumer does. transformers has no grammar built in, so a JSON schema (constrained
output, a forced tool call) is asked for in the system prompt but not enforced: the caller validates and
retries. On CPU this backend works but is slow; the llama-cpp backend with a GGUF is the one to use there.
Benchmark: `python bench/bench_hf.py --help`.
"""

from __future__ import annotations

import gc
import inspect
import json
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError, BadInput, MissingExtra
from assistant.models.base import Completion, GenerationOptions, Message, TokenLogprob, Usage
from assistant.models.special import Piece, content_ids, split_prompt
from assistant.models.toolcalls import prepare, stream_with_tools

log = logging.getLogger(__name__)

# Tokens that end an assistant turn in common chat formats; models list some only in generation_config.
_END_OF_TURN = ("<|end|>", "<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|endoftext|>")


def _cpu_dtype() -> str:
    """bfloat16 where the CPU computes it natively (AVX512-BF16 or AMX), else float32.

    On a 2-core Xeon with AMX, bfloat16 against float32: prefill 2.6x (50M toy) to 3.8x (200M) faster, decode
    5-17% faster, half the memory; only a 2-layer, 64-wide toy decodes faster in float32 (per-op overhead).
    Without native support bfloat16 is emulated and slower than float32.
    """
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return "float32"
    return "bfloat16" if {"avx512_bf16", "amx_bf16"} & set(flags.split()) else "float32"


def _import_hf() -> tuple[Any, Any]:
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtra(exc.name or "transformers", "hf") from exc
    return torch, transformers


def _load_error(source: str, exc: BaseException) -> AssistantError:
    """One line that says why `source` could not be loaded and what to do."""
    from huggingface_hub import errors as hub

    chain: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(chain) < 10:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    if any(isinstance(e, hub.GatedRepoError) for e in chain):
        return AssistantError(f"model {source} is gated — accept its license on huggingface.co, then `hf auth login`")
    if any(isinstance(e, hub.RepositoryNotFoundError) for e in chain):
        return BadInput(f"model not found on the Hugging Face hub: {source} — check the id or pass a folder")
    if any(isinstance(e, (hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled, ConnectionError)) for e in chain):
        return AssistantError(
            f"cannot download {source}: no network — run `hf download {source}` on a connected machine "
            "and pass the folder, or use a model already in the Hugging Face cache"
        )
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return AssistantError(f"cannot load model {source}: {first}")


def _source(model_id_or_path: str) -> tuple[str, str]:
    """(what to pass to from_pretrained, display name); a missing folder fails here, before any download."""
    path = Path(model_id_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BadInput(f"{path} has no config.json — pass a Hugging Face model folder (or a hub id)")
        return str(path), path.name
    if path.exists():
        raise BadInput(f"{path} is a file — this backend loads a model folder; use the llama-cpp backend for a .gguf")
    if model_id_or_path.startswith(("/", ".", "~", "\\")) or model_id_or_path.count("/") > 1:
        raise AssistantError(
            f"model folder not found: {model_id_or_path} — check the path, or pass a hub id such as "
            "microsoft/Phi-3-mini-4k-instruct"
        )
    return model_id_or_path, model_id_or_path


class TransformersBackend:
    """A causal LM loaded with transformers; implements `ModelBackend`."""

    supports_tools = True  # tool calls are parsed from its text (toolcalls.py)
    supports_schema = False  # a schema can only be asked for in the prompt
    grammar_from_schema = False
    counts_tokens_locally = True

    def __init__(
        self,
        model_id_or_path: str,
        *,
        quantize: str = "auto",
        device: str = "auto",
        n_ctx: int | None = None,
        trust_remote_code: bool = False,
        dtype: str = "auto",
    ):
        torch, transformers = _import_hf()
        if quantize not in ("auto", "nf4", "none"):
            raise BadInput(f"unknown quantize {quantize!r} — use auto, nf4 or none")
        self._torch = torch
        source, self.name = _source(model_id_or_path)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        on_cuda = self.device.startswith("cuda")
        self.quantize = ("nf4" if on_cuda else "none") if quantize == "auto" else quantize
        if dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise BadInput(f"unknown dtype {dtype!r} — use auto, float32, bfloat16 or float16")
        self.dtype = ("bfloat16" if on_cuda else _cpu_dtype()) if dtype == "auto" else dtype
        kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": getattr(torch, self.dtype)}
        if self.quantize == "nf4":
            try:
                import bitsandbytes  # noqa: F401
            except ImportError as exc:
                raise MissingExtra("bitsandbytes", "hf") from exc
            kwargs["quantization_config"] = transformers.BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_compute_dtype=torch.bfloat16,
                bnb_4bit_use_double_quant=True,
            )
        if on_cuda or self.quantize == "nf4":
            kwargs["device_map"] = "auto" if on_cuda and device == "auto" else self.device
        try:
            config = transformers.AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
        except OSError as exc:
            raise _load_error(source, exc) from exc
        if not getattr(self.tokenizer, "chat_template", None):
            raise BadInput(f"{self.name} has no chat template in its tokenizer — use an instruct/chat model")
        # the vocabulary's added tokens (id → text), which content must not produce (`_encode`); read once
        self._added = {i: t.content for i, t in self.tokenizer.added_tokens_decoder.items()}
        try:
            self.model = transformers.AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as exc:
            raise _load_error(source, exc) from exc
        except (ImportError, RuntimeError, ValueError, NotImplementedError) as exc:
            if self.quantize == "nf4" and not on_cuda:
                raise AssistantError(
                    f"4-bit NF4 on CPU is not supported by the installed bitsandbytes ({exc}) — "
                    "use quantize='none', or the llama-cpp backend with a GGUF"
                ) from exc
            raise
        self.model.eval()
        if not on_cuda:
            warnings.warn(
                "transformers generation on CPU is slow; for CPU use the llama-cpp backend with a GGUF "
                "(e.g. Phi-3-mini-4k-instruct-q4.gguf)",
                stacklevel=2,
            )
        self.context_length = int(n_ctx or getattr(config, "max_position_embeddings", 0) or 4096)
        self._eos = self._end_ids()
        # Only the last position's logits are needed: skips a prompt x vocab matrix at prefill.
        accepts = inspect.signature(self.model.forward).parameters
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}

    def _end_ids(self) -> set[int]:
        ids: set[int] = set()
        for value in (
            getattr(self.model.generation_config, "eos_token_id", None),
            self.tokenizer.eos_token_id,
        ):
            ids.update([value] if isinstance(value, int) else value or [])
        added = self.tokenizer.get_added_vocab()
        ids.update(added[t] for t in _END_OF_TURN if t in added)
        return ids

    def count_tokens(self, text: str) -> int:
        """Tokens `text` costs in this model's vocabulary, as message content (control strings in it stay text)."""
        return len(self._encode(text, content=True))

    def render(self, messages: list[Message], options: GenerationOptions | None = None) -> str:
        """The exact prompt text the model sees for `messages` (chat template, tools, schema instruction)."""
        return "".join(piece.text for piece in self._pieces(messages, options))

    def prompt_ids(self, messages: list[Message], options: GenerationOptions | None = None) -> list[int]:
        """The prompt's token ids: the template's text is parsed for special tokens, message content never."""
        return [i for piece in self._pieces(messages, options) for i in self._encode(piece.text, piece.content)]

    def _encode(self, text: str, content: bool) -> list[int]:
        # split_special_tokens: `<|end|>` in content is encoded as the characters it is made of; an added token that
        # is not special (Qwen2.5's `<tool_call>`) is still matched, and `content_ids` breaks it.
        def encode(t: str) -> list[int]:
            return list(self.tokenizer(t, add_special_tokens=False, split_special_tokens=content)["input_ids"])

        if not content:
            return encode(text)
        return content_ids(encode, self._added.get, text)

    def _pieces(self, messages: list[Message], options: GenerationOptions | None) -> list[Piece]:
        plain, schema = prepare(messages, options or GenerationOptions())
        chat = [{"role": m.role, "content": m.content} for m in plain]
        if schema is not None:
            note = "Reply with only JSON matching this schema: " + json.dumps(schema, separators=(",", ":"))
            if chat and chat[0]["role"] == "system":
                chat[0]["content"] += "\n\n" + note
            else:
                chat.insert(0, {"role": "system", "content": note})

        def render(contents: list[str]) -> str:
            turns = [{"role": turn["role"], "content": text} for turn, text in zip(chat, contents, strict=True)]
            return str(self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True))

        return split_prompt(render, [turn["content"] for turn in chat])

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        """Yield text deltas, then one `Completion` (tool calls parsed by `stream_with_tools`)."""
        return stream_with_tools(self._raw(self.prompt_ids(messages, options), options), options)

    def _raw(self, ids: list[int], options: GenerationOptions) -> Iterator[str | Completion]:
        """The token loop: prefill, then one token at a time over the KV cache; text deltas, then a Completion."""
        torch = self._torch
        budget = max(1, self.context_length - min(options.max_tokens, self.context_length // 2))
        if len(ids) > budget:
            log.warning("prompt of %d tokens cut to the last %d to fit the context", len(ids), budget)
            ids = ids[-budget:]
        max_new = max(0, min(options.max_tokens, self.context_length - len(ids)))
        generator = None
        if options.temperature > 0 and options.seed is not None:
            generator = torch.Generator(device=self.model.device).manual_seed(options.seed)
        out_ids: list[int] = []
        scored: list[TokenLogprob] = []  # each token's text and log-probability, from the logits it was picked from
        emitted, finish, cut_at_stop = "", "length", False
        start = time.perf_counter()
        first = start
        with torch.inference_mode():
            inputs = torch.tensor([ids], device=self.model.device)
            past = None
            for step in range(max_new):
                out = self.model(input_ids=inputs, past_key_values=past, use_cache=True, **self._last_only)
                past = out.past_key_values
                logits = out.logits[0, -1]
                token = self._pick(logits, options.temperature, generator)
                if step == 0:
                    first = time.perf_counter()
                if token in self._eos:
                    finish = "stop"
                    break
                out_ids.append(token)
                text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
                logprob = float(torch.log_softmax(logits.float(), dim=-1)[token])
                scored.append(TokenLogprob(text[sum(len(t.text) for t in scored) :], logprob))
                cut = min((i for i in (text.find(s) for s in options.stop if s) if i >= 0), default=-1)
                if cut >= 0:
                    if cut > len(emitted):
                        yield text[len(emitted) : cut]
                    emitted, finish, cut_at_stop = text[:cut], "stop", True
                    break
                ready = _safe_prefix(text, options.stop)
                if len(ready) > len(emitted):
                    yield ready[len(emitted) :]
                    emitted = ready
                inputs = torch.tensor([[token]], device=self.model.device)
        if not cut_at_stop:  # what was held back as a possible stop-string start is answer text after all
            text = self.tokenizer.decode(out_ids, skip_special_tokens=True)
            if len(text) > len(emitted):
                yield text[len(emitted) :]
        end = time.perf_counter()
        usage = Usage(prompt_tokens=len(ids), completion_tokens=len(out_ids))
        yield Completion(
            text="", usage=usage, finish_reason=finish, prefill_s=first - start, decode_s=end - first, logprobs=scored
        )

    def _pick(self, logits: Any, temperature: float, generator: Any) -> int:
        if temperature <= 0:
            return int(logits.argmax())
        probs = self._torch.softmax(logits.float() / temperature, dim=-1)
        return int(self._torch.multinomial(probs, 1, generator=generator))

    def close(self) -> None:
        """Free the model's memory; the backend is unusable afterwards."""
        self.model = None
        gc.collect()
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()


def _safe_prefix(text: str, stops: list[str]) -> str:
    """Text that can be shown now: not a half-decoded character, not the start of a stop string."""
    text = text.rstrip("\ufffd")
    hold = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:n]):
                hold = max(hold, n)
                break
    return text[: len(text) - hold]
