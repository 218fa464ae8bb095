"""OpenMP spin policy against llama.cpp decode speed, on an idle CPU and with two llama.cpp processes at once.

    python bench/omp_wait.py [GGUF]        # default: the bundled SmolLM2-135M

Prints a Markdown table. It is why `assistant/__init__.py` sets GOMP_SPINCOUNT=500 unless the user chose.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

POLICIES = [
    ("default (long spin)", {}),
    ("OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("GOMP_SPINCOUNT=500", {"GOMP_SPINCOUNT": "500"}),
    ("GOMP_SPINCOUNT=2000", {"GOMP_SPINCOUNT": "2000"}),
]


def decode(path: str) -> float:
    """Decode tok/s of 96 greedy tokens with 2 threads (second of two runs)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=2, n_threads_batch=2, verbose=False)
    tokens = llm.tokenize(b"Write the numbers from 1 to 300 in words: one, two,", add_bos=False)
    for _ in range(2):
        llm.reset()
        first = 0.0
        for _chunk in llm.create_completion(tokens, max_tokens=96, temperature=0, stream=True):
            first = first or time.perf_counter()
        end = time.perf_counter()
    return (llm.n_tokens - len(tokens) - 1) / (end - first)


def measure(path: str, env: dict[str, str], copies: int) -> list[float]:
    """Decode speeds of `copies` processes run at once under `env`."""
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    cmd = [sys.executable, __file__, "--child", path]
    procs = [subprocess.Popen(cmd, env={**base, **env}, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [float(p.communicate()[0]) for p in procs]


def main() -> None:
    """Print the table."""
    if sys.argv[1:2] == ["--child"]:
        print(decode(sys.argv[2]))
        return
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        from assistant.models.presets import PRESETS, local_path

        path = str(local_path(PRESETS["smollm2-135m"]))
    print(f"{os.path.basename(path)}, 2 threads, decode tok/s\n")
    print("| policy | idle | each of two processes at once |")
    print("|---|---|---|")
    for name, env in POLICIES:
        idle = measure(path, env, 1)[0]
        pair = measure(path, env, 2)
        print(f"| {name} | {idle:.1f} | {' / '.join(f'{x:.1f}' for x in pair)} |")


if __name__ == "__main__":
    main()
