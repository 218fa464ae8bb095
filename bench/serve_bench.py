"""Benchmarks of `assistant serve`; each prints a Markdown table. Run from the repository root.

    python bench/serve_bench.py throughput        # --backend openai -j 8 before a scripted model server: N clients
    python bench/serve_bench.py load              # 200 requests from 8 clients, some leaving mid-stream, some bad
    python bench/serve_bench.py latency           # the bundled SmolLM2: a request to the server against ask()

`throughput` and `load` put a real `assistant serve` process (local search on tests/data) in front of
tests/scripted_openai.py, a model server that answers any number of requests at once after a fixed delay, so
that what is measured is the assistant server, not a model. `latency` loads SmolLM2 twice, once in this process
(`Assistant.ask`, what `assistant ask` runs after its start-up) and once in `assistant serve`, and asks both the
same question in turn; the difference is what the server adds per question.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
QUESTION = "What is the capital of Colombia?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def index() -> Iterator[Path]:
    """A BM25 index of tests/data/passages.jsonl in a temporary folder."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tests.db"
        from assistant.search.local import build_index

        build_index([ROOT / "tests/data/passages.jsonl"], out)
        yield out


@contextlib.contextmanager
def assistant_serve(*options: str) -> Iterator[str]:
    """`assistant serve OPTIONS` on a free port, with its own user dir and no cache; yields its root URL."""
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "ASSISTANT_HOME": home, "OMP_WAIT_POLICY": "PASSIVE"}
        command = [sys.executable, "-m", "assistant", "serve", "--port", str(port), "--cache-ttl", "0", *options]
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"assistant serve did not start: {proc.stderr.read() if proc.stderr else ''}")
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def chat(question: str = QUESTION, **fields: Any) -> dict[str, Any]:
    return {"model": "search-assistant", "messages": [{"role": "user", "content": question}], **fields}


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return head.strip() + ("+dirty" if dirty.stdout.strip() else "")


# --- throughput -------------------------------------------------------------------------------------------------


def throughput(args: argparse.Namespace) -> None:
    from tests.scripted_openai import ScriptedServer

    print(f"commit {commit()}; scripted model server: {args.delay} s to answer, any number at once; ")
    print(
        f"`assistant serve --backend openai -j {args.slots} --search local`; each client sends {args.each} "
        "requests one after another (not streamed)\n"
    )
    print("| clients | requests | seconds | requests/s | median latency s | p95 latency s | most at the model server |")
    print("|---|---|---|---|---|---|---|")
    with ScriptedServer(delay=args.delay).running() as upstream, index() as db:
        options = ["--backend", "openai", "--base-url", upstream.url, "--model", "scripted", "-j", str(args.slots)]
        with assistant_serve(*options, "--search", "local", "--index", str(db), "--lang", "en") as url:
            with httpx.Client(timeout=60) as http:
                http.post(f"{url}/v1/chat/completions", json=chat()).raise_for_status()  # warm: first-use costs
            for clients in args.clients:
                upstream.most = 0
                latencies: list[float] = []

                start = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    list(pool.map(_client, [url] * clients, [args.each] * clients, [latencies] * clients))
                seconds = time.perf_counter() - start
                q = statistics.quantiles(latencies, n=20)
                print(
                    f"| {clients} | {len(latencies)} | {seconds:.2f} | {len(latencies) / seconds:.2f} | "
                    f"{statistics.median(latencies):.3f} | {q[18]:.3f} | {upstream.most} |"
                )


def _client(url: str, count: int, latencies: list[float]) -> None:
    """One client: `count` questions one after another, each one's seconds added to `latencies`."""
    with httpx.Client(timeout=60) as http:
        for _ in range(count):
            start = time.perf_counter()
            http.post(f"{url}/v1/chat/completions", json=chat()).raise_for_status()
            latencies.append(time.perf_counter() - start)


# --- load -----------------------------------------------------------------------------------------------------

BAD_BODIES = [
    b"{not json",
    json.dumps({"model": "search-assistant", "messages": []}).encode(),
    json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}).encode(),
    json.dumps(chat(max_tokens=-1)).encode(),
    json.dumps({"model": "search-assistant", "messages": [{"role": "assistant", "content": "x"}]}).encode(),
]


def load(args: argparse.Namespace) -> None:
    from tests.scripted_openai import ScriptedServer

    rng = random.Random(args.seed)
    kinds = rng.choices(["plain", "stream", "leave", "bad"], weights=[35, 35, 15, 15], k=args.requests)
    bad = [rng.choice(BAD_BODIES) for _ in kinds]
    results: list[tuple[str, str]] = []  # (kind, outcome)
    reply = " ".join(f"word{i}" for i in range(20)) + " [1]"
    with ScriptedServer(delay=0.1, reply=reply, token_delay=0.01).running() as upstream, index() as db:
        options = ["--backend", "openai", "--base-url", upstream.url, "--model", "scripted", "-j", str(args.slots)]
        with assistant_serve(*options, "--search", "local", "--index", str(db), "--lang", "en") as url:
            endpoint = f"{url}/v1/chat/completions"

            def one(i: int) -> None:
                kind = kinds[i]
                try:
                    with httpx.Client(timeout=args.timeout) as http:
                        results.append((kind, _request(http, endpoint, kind, bad[i])))
                except httpx.TimeoutException:
                    results.append((kind, "hung"))
                except httpx.TransportError as e:
                    results.append((kind, f"transport error: {e}"))

            start = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(one, range(args.requests)))
            seconds = time.perf_counter() - start
            time.sleep(1)
            after = httpx.get(f"{url}/health").json()
        still = upstream.active
    outcomes: dict[str, dict[str, int]] = {}
    for kind, outcome in results:
        outcomes.setdefault(kind, {}).setdefault(outcome, 0)
        outcomes[kind][outcome] += 1
    print(
        f"commit {commit()}; {args.requests} requests from {args.clients} clients in {seconds:.1f} s "
        f"(seed {args.seed}); `assistant serve --backend openai -j {args.slots}` before a scripted model server "
        "streaming 21 words, 10 ms apart, after 100 ms\n"
    )
    print("| request | sent | outcomes |")
    print("|---|---|---|")
    for kind in ("plain", "stream", "leave", "bad"):
        got = outcomes.get(kind, {})
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(got.items()))
        print(f"| {kind} | {sum(got.values())} | {shown} |")
    server_errors = sum(v for o in outcomes.values() for k, v in o.items() if k.startswith("HTTP 5"))
    hung = sum(o.get("hung", 0) for o in outcomes.values())
    unanswered = sum(v for kind in ("plain", "stream") for k, v in outcomes.get(kind, {}).items() if k != "answered")
    print(
        f"\nserver errors (5xx): {server_errors}; hung: {hung}; well-formed requests not answered: {unanswered}; "
        f"after the run: /health queue {after['queue']}, running {after['running']}; "
        f"streams open at the model server: {still}"
    )


def _request(http: httpx.Client, endpoint: str, kind: str, bad: bytes) -> str:
    """Send one request of `kind`; its outcome in a word or two."""
    if kind == "bad":
        response = http.post(endpoint, content=bad, headers={"Content-Type": "application/json"})
        return f"HTTP {response.status_code}"
    if kind == "plain":
        response = http.post(endpoint, json=chat())
        ok = response.status_code == 200 and "**Sources**" in response.json()["choices"][0]["message"]["content"]
        return "answered" if ok else f"HTTP {response.status_code}"
    with http.stream("POST", endpoint, json=chat(stream=True)) as response:
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        text, done = "", False
        for line in response.iter_lines():
            if kind == "leave" and "word3" in text:
                return "left mid-stream"
            if line == "data: [DONE]":
                done = True
            elif line.startswith("data: "):
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    return "error event"
                text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
        return "answered" if done and "**Sources**" in text else "cut short"


# --- latency --------------------------------------------------------------------------------------------------


def latency(args: argparse.Namespace) -> None:
    from assistant.events import Answer
    from assistant.runner import Assistant
    from assistant.settings import load_settings

    options = ["--model", "smollm2-135m", "--threads", str(args.threads), "--lang", "en", "--search", "local"]
    with index() as db, assistant_serve(*options, "--index", str(db)) as url:
        settings = load_settings(
            model="smollm2-135m", threads=args.threads, lang="en", search="local", index=str(db), cache_ttl=0
        )
        local = Assistant.from_settings(settings)

        def in_process() -> str:
            final = [e for e in local.ask(QUESTION) if isinstance(e, Answer)][0]
            return final.answer

        http = httpx.Client(timeout=120)

        def plain() -> str:
            return str(http.post(f"{url}/v1/chat/completions", json=chat()).json()[EXTRA]["answer"])

        def streamed() -> str:
            with http.stream("POST", f"{url}/v1/chat/completions", json=chat(stream=True)) as response:
                lines = list(response.iter_lines())
            return str(next(json.loads(x[6:])[EXTRA]["answer"] for x in lines if f'"{EXTRA}"' in x))

        ways: dict[str, Callable[[], str]] = {
            "ask() in process": in_process,
            "server": plain,
            "server, streamed": streamed,
        }
        times: dict[str, list[float]] = {name: [] for name in ways}
        answers = {name: way() for name, way in ways.items()}  # warm: the first answer pays for the model's load
        for _ in range(args.runs):
            for name, way in ways.items():  # in turn, so that a busy moment of the machine hits all three
                start = time.perf_counter()
                way()
                times[name].append(time.perf_counter() - start)
        local.close()
    base = times["ask() in process"]
    print(
        f"commit {commit()}; SmolLM2-135M, {args.threads} threads, local search on tests/data, "
        f"{args.runs} runs of each in turn after one warm-up; the question: {QUESTION!r}\n"
    )
    print("| how | answer | median ms | min ms | median of (this − ask()) per run, ms |")
    print("|---|---|---|---|---|")
    for name, samples in times.items():
        overhead = statistics.median(t - b for t, b in zip(samples, base, strict=True)) * 1000
        print(
            f"| {name} | {answers[name]} | {statistics.median(samples) * 1000:.0f} | {min(samples) * 1000:.0f} | "
            f"{overhead:+.1f} |"
        )


EXTRA = "search_assistant"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput", help="requests/s for N clients, --backend openai")
    t.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    t.add_argument("--each", type=int, default=8, help="requests per client")
    t.add_argument("--delay", type=float, default=0.5, help="the scripted model server's seconds per answer")
    t.add_argument("--slots", type=int, default=8, help="assistant serve -j")
    t.set_defaults(run=throughput)
    lo = sub.add_parser("load", help="a bounded load test with disconnects and malformed requests")
    lo.add_argument("--requests", type=int, default=200)
    lo.add_argument("--clients", type=int, default=8)
    lo.add_argument("--slots", type=int, default=4)
    lo.add_argument("--timeout", type=float, default=60, help="seconds after which a request counts as hung")
    lo.add_argument("--seed", type=int, default=0)
    lo.set_defaults(run=load)
    la = sub.add_parser("latency", help="the server against ask() with the bundled SmolLM2")
    la.add_argument("--runs", type=int, default=5)
    la.add_argument("--threads", type=int, default=2)
    la.set_defaults(run=latency)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
