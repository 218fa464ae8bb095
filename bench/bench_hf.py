"""Benchmark the transformers backend on a random-weight Phi-3: load time, memory, prefill and decode speed.

    python bench/bench_hf.py                          # Phi-3-mini shape (3.8B), NF4 on CUDA
    python bench/bench_hf.py --device cpu --small     # 2-layer toy on CPU: float32 vs bfloat16

The model is built from a config (no download), saved to a temporary folder and loaded through
`TransformersBackend(folder)`, the code path a user's folder takes. Each setting is timed twice: through the
backend's manual token loop, and through `model.generate` with a `TextIteratorStreamer` in a thread.
Random weights never write a sensible answer, so end-of-turn tokens are ignored and every run decodes the
full `--new-tokens`. Memory is torch's peak allocation on CUDA and the process's peak RSS on CPU (so far, so
later CPU rows include earlier ones).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Phi3Config, Phi3ForCausalLM, PreTrainedTokenizerFast, TextIteratorStreamer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from assistant.models.base import GenerationOptions, Message, generate  # noqa: E402
from assistant.models.hf import TransformersBackend  # noqa: E402

PHI3_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}"
    "{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}"
    "{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
SPECIAL = ["<unk>", "<s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TEXT = "Paris is the capital of France. The quick brown fox jumps over the lazy dog. Cite your sources. "
MINI = {"hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 32, "num_attention_heads": 32}
SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}


def build(folder: Path, shape: dict[str, Any], vocab: int, device: str) -> None:
    """Save a random Phi-3 of `shape` and a small BPE tokenizer with Phi-3's chat template to `folder`."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tok.train_from_iterator(
        [TEXT] * 5, trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL, initial_alphabet=alphabet)
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|endoftext|>", unk_token="<unk>")
    fast.chat_template = PHI3_TEMPLATE
    fast.save_pretrained(folder)
    config = Phi3Config(
        vocab_size=max(vocab, len(fast)),  # ids past the tokenizer's vocab decode to nothing: fine for timing
        num_key_value_heads=shape["num_attention_heads"],
        max_position_embeddings=4096,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.eos_token_id,  # the default, 32000, is past a small vocabulary
        **shape,
    )
    with torch.device(device):  # initialise where there is room: 3.8B float32 weights are 15 GB
        model = Phi3ForCausalLM._from_config(config, dtype=torch.bfloat16 if device == "cuda" else torch.float32)
    model.save_pretrained(folder)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def peak_memory_gb(device: str) -> float:
    """Peak GPU memory allocated on CUDA; peak resident memory of this process on CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def prompt_of(backend: TransformersBackend, tokens: int) -> list[Message]:
    """A user message whose rendered prompt is about `tokens` long."""
    filler = backend.tokenizer(TEXT * (tokens // 10 + 1), add_special_tokens=False)["input_ids"]
    overhead = len(backend.prompt_ids([Message("user", "")]))
    return [Message("user", backend.tokenizer.decode(filler[: tokens - overhead]))]


def manual(backend: TransformersBackend, messages: list[Message], new_tokens: int) -> tuple[int, float, float]:
    """(prompt tokens, prefill tok/s, decode tok/s) through the backend's own stream."""
    done = generate(backend, messages, GenerationOptions(max_tokens=new_tokens))
    n = done.usage.completion_tokens
    return done.usage.prompt_tokens, done.usage.prompt_tokens / done.prefill_s, (n - 1) / done.decode_s


def streamer(backend: TransformersBackend, messages: list[Message], new_tokens: int) -> tuple[int, float, float]:
    """The same through `model.generate` in a thread, timing each token as the streamer receives it."""
    stamps: list[float] = []

    class Timed(TextIteratorStreamer):
        def put(self, value: torch.Tensor) -> None:
            stamps.append(time.perf_counter())
            super().put(value)

    ids = torch.tensor([backend.prompt_ids(messages)])
    stream = Timed(backend.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = {
        "max_new_tokens": new_tokens,
        "min_new_tokens": new_tokens,
        "do_sample": False,
        "streamer": stream,
    }
    thread = threading.Thread(target=backend.model.generate, args=(ids.to(backend.model.device),), kwargs=kwargs)
    start = time.perf_counter()
    thread.start()
    for _ in stream:
        pass
    thread.join()
    first, last = stamps[1], stamps[-1]  # stamps[0] is the prompt itself
    return ids.shape[1], ids.shape[1] / (first - start), (len(stamps) - 2) / (last - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--small", action="store_true", help="the 2-layer toy instead of the Phi-3-mini shape")
    parser.add_argument("--prompt-tokens", type=int, default=512)
    parser.add_argument("--new-tokens", type=int, default=128)
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --device cpu --small")
    if args.device == "cpu" and not args.small:
        sys.exit("the Phi-3-mini shape on CPU takes many minutes per run: add --small")
    settings = [("nf4", "bfloat16")] if args.device == "cuda" else [("none", "float32"), ("none", "bfloat16")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "random-phi3"
        build(folder, SMALL if args.small else MINI, 32064, args.device)
        for quantize, dtype in settings:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                backend = TransformersBackend(str(folder), quantize=quantize, device=args.device, dtype=dtype)
            load_s = time.perf_counter() - start
            memory = peak_memory_gb(args.device)
            backend._eos.clear()  # random weights: decode the full count, never stop at an end token
            messages = prompt_of(backend, args.prompt_tokens)
            manual(backend, messages, 4)  # warm-up: kernels, allocator, caches
            for loop, run in (("manual loop", manual), ("streamer thread", streamer)):
                prompt, prefill, decode = run(backend, messages, args.new_tokens)
                rows.append((f"{quantize}/{dtype}", loop, load_s, memory, prompt, prefill, decode))
            backend.close()
    row = "{:<16} {:<16} {:>7} {:>7} {:>6} {:>14} {:>13}".format
    unit = "GPU GB" if args.device == "cuda" else "RSS GB"
    print(row("weights", "decode path", "load s", unit, "prompt", "prefill tok/s", "decode tok/s"))
    for name, loop, load_s, memory, prompt, prefill, decode in rows:
        print(row(name, loop, f"{load_s:.2f}", f"{memory:.2f}", prompt, f"{prefill:.1f}", f"{decode:.1f}"))


if __name__ == "__main__":
    main()
