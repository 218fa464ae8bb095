"""Benchmark: the project's llama.cpp backend against llama-cpp-python called directly, memory, prompt size
and where the time of `assistant ask` goes. Prints Markdown tables.

    python bench/bench.py                      # every GGUF preset present, tests/data as the local index
    python bench/bench.py --models smollm2-135m --threads 2 --questions 5

Each model is measured in a fresh subprocess so that peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT = "Write the numbers from 1 to 300 in words, separated by commas: one, two, three,"
CONTEXT = " ".join(["The Night Watch is a 1642 painting by Rembrandt van Rijn, in the Rijksmuseum."] * 30)


def speed(path: str, threads: int, decode_tokens: int) -> dict[str, float]:
    """Prefill and decode tok/s through the project's backend and through llama_cpp directly."""
    import llama_cpp

    import assistant  # noqa: F401  (the OpenMP spin policy, before llama_cpp loads)
    from assistant.models.base import Completion, GenerationOptions, Message
    from assistant.models.llama_cpp import LlamaCppBackend

    out: dict[str, float] = {}
    backend = LlamaCppBackend(path, n_ctx=2048, threads=threads)
    messages = [Message("user", f"{CONTEXT}\n\n{PROMPT}")]
    opts = GenerationOptions(max_tokens=decode_tokens)
    for _ in range(2):  # the second run is measured: same work, warm caches
        backend.llm.reset()
        *_, done = backend.stream(messages, opts)
    assert isinstance(done, Completion)
    out["project_prefill"] = done.usage.prompt_tokens / done.prefill_s
    out["project_decode"] = (done.usage.completion_tokens - 1) / done.decode_s
    out["prompt_tokens"] = done.usage.prompt_tokens
    tokens = backend.prompt_ids(messages)
    backend.close()

    llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    for _ in range(2):
        llm.reset()
        start = time.perf_counter()
        first = 0.0
        for _chunk in llm.create_completion(tokens, max_tokens=decode_tokens, temperature=0.0, stream=True):
            first = first or time.perf_counter()
        end = time.perf_counter()
    completion = llm.n_tokens - len(tokens)
    out["direct_prefill"] = len(tokens) / (first - start)
    out["direct_decode"] = (completion - 1) / (end - first)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["gguf_mb"] = Path(path).stat().st_size / 2**20
    return out


def ask_timings(model: str, index: str, questions: list[str], threads: int) -> dict[str, float]:
    """Mean timings, prompt tokens per step and steps of `assistant ask --json` over the questions."""
    rows = []
    for q in questions:
        cmd = [
            sys.executable,
            "-m",
            "assistant",
            "ask",
            q,
            "--json",
            "--model",
            model,
            "--search",
            "local",
            "--index",
            index,
        ]
        env = {**os.environ, "ASSISTANT_THREADS": str(threads), "ASSISTANT_CACHE_TTL": "0"}
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(done.stdout))
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    out = {k: mean([r["timings"][k] for r in rows]) for k in rows[0]["timings"]}
    generations = [max(1, len([s for s in r["steps"] if s["by"] == "model"]) + 1) for r in rows]
    out["prompt_tokens_per_step"] = mean(
        [r["usage"]["prompt_tokens"] / g for r, g in zip(rows, generations, strict=True)]
    )
    out["generations"] = mean(generations)
    return out


def main() -> None:
    """Run the benchmark and print the tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="presets or GGUF paths (default: every GGUF preset present)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--questions", type=int, default=5, help="questions from tests/data for the ask timings")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(speed(args.child, args.threads, args.decode_tokens)))
        return

    from assistant.models.presets import PRESETS, local_path
    from assistant.search.local import build_index

    names = args.models or [p.name for p in PRESETS.values() if p.filename and local_path(p)]
    paths = {n: str(local_path(PRESETS[n])) if n in PRESETS else n for n in names}
    data = ROOT / "tests" / "data"
    questions = [json.loads(line)["question"] for line in (data / "questions.jsonl").open()][: args.questions]
    index = Path(tempfile.mkdtemp()) / "bench.db"
    build_index([data / "passages.jsonl"], index)

    print(f"threads={args.threads}, decode {args.decode_tokens} tokens, {len(questions)} questions from tests/data\n")
    print("| model | GGUF MB | peak RSS MB | prefill tok/s project / direct | decode tok/s project / direct | ratio |")
    print("|---|---|---|---|---|---|")
    for name, path in paths.items():
        cmd = [
            sys.executable,
            __file__,
            "--child",
            path,
            "--threads",
            str(args.threads),
            "--decode-tokens",
            str(args.decode_tokens),
        ]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
        print(
            f"| {name} | {r['gguf_mb']:.0f} | {r['peak_rss_mb']:.0f} | {r['project_prefill']:.0f} / "
            f"{r['direct_prefill']:.0f} | {r['project_decode']:.1f} / {r['direct_decode']:.1f} | "
            f"{r['project_decode'] / r['direct_decode']:.2f} |"
        )
    print(
        "\n| model | prompt tokens / step | generations | load s | search s | read s | prefill s | decode s | total s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name in paths:
        t = ask_timings(name if name in PRESETS else paths[name], str(index), questions, args.threads)
        print(
            f"| {name} | {t['prompt_tokens_per_step']:.0f} | {t['generations']:.1f} | {t['load']:.2f} | "
            f"{t['search']:.3f} | {t['read']:.3f} | {t['prefill']:.2f} | {t['decode']:.2f} | {t['total']:.2f} |"
        )


if __name__ == "__main__":
    main()
