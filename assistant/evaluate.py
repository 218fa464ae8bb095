"""Evaluate the assistant on a QA dataset in up to three modes, resumably: `assistant eval DATASET --mode all`.

Modes, all with the same model: `closed` answers from the model alone; `plain` is the reference a researcher's
30-line script would be (assistant/baseline.py: top 3 passages, one fixed prompt, the first line of the reply);
`rag` is the project's own answering step after one search with the question; `search` is the agent loop as the
settings run it (multi-step for models trusted with tools, else the same as rag). `--mode plain,rag,search`
names modes one by one. Each (question, mode) becomes one row of
`DIR/results.jsonl` as soon as it is answered; re-running the same command skips the rows already there (the
log is the one `assistant batch` uses: kill-safe, locked). `DIR/run.json` records what the run measures (model,
search, and every setting that changes answers), and a resumed run must match it; it is checked, or written,
while the log's lock is held. At the end the report is rebuilt from every row of this selection (evals/report.py).

`answer_in_context` says whether a gold alias occurs in the passages of the final prompt: it separates retrieval
misses from reading misses. Each row's `context` lists those passages, `[{n, id, text}]`, with the exact text the
prompt showed after "[n] " (title, then the passage or, with evidence selection, its excerpt), cited or not, so the
figure can be recomputed from the rows alone. run.json's `row_format` says which fields rows carry (`ROW_FORMAT`).

    assistant eval /work/shared/data/triviaqa/wiki-dev300.jsonl --mode all --limit 20 --search local --index tqa.db
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.batch import PerThread, Progress, run_tasks
from assistant.errors import AssistantError, BadInput
from assistant.evals.datasets import QAExample, QATask
from assistant.evals.scoring import answer_in_context, is_yes_no
from assistant.events import Answer, Source, ToolReturned
from assistant.resultlog import ResultLog
from assistant.runner import Assistant

# mode -> (search, multi) for Assistant.ask: multi None follows the settings; plain is Assistant.baseline
MODES: dict[str, tuple[bool, bool | None]] = {
    "closed": (False, None),
    "plain": (True, False),
    "rag": (True, False),
    "search": (True, None),
}
MODE_SETS = {
    "closed": ["closed"],
    "rag": ["rag"],
    "search": ["search"],
    "both": ["closed", "search"],
    "all": ["closed", "rag", "search"],
}
# The settings that change answers (what is searched, read, prompted, generated, and which route answers), as
# run.json records them; the search engines' own (index, SearXNG URL) are recorded where the chain uses them.
ANSWER_SETTINGS = (
    "max_steps",
    "retriever",
    "context_tokens",
    "shown_sources",
    "evidence_tokens",
    "max_results",
    "read_pages",
    "max_tokens",
    "n_ctx",
    "temperature",
    "lang",
    "lang_threshold",
    "routes",
    "multilingual_model",
    "region",
    "fetch_max_bytes",
    "allow_private",
    "confidence_threshold",
    "second_look",
)
# The fields a row carries: 2 added `context` (every source of the final prompt with the text it showed) and took
# `answer_in_context` from that text rather than from the whole passages; 3 gave each look its own scores of what it
# was shown and cited, and its cost (what replaying another threshold needs); 4 gave each look the ids of the
# passages it was shown (`shown_ids`: a replay that takes fewer looks knows what its last one read). A run of another
# format is not resumed.
ROW_FORMAT = 4
# A resumed run must match these: each changes what the rows measure.
CHECKED = ("row_format", "dataset", "model", "backend", "search", "loop", *ANSWER_SETTINGS, "index", "searxng_url")


@dataclass
class EvalItem:
    """One question in one mode."""

    example: QAExample
    mode: str

    @property
    def key(self) -> tuple[str, str]:
        """The row's key in results.jsonl."""
        return (self.example.id, self.mode)


def modes_for(name: str) -> list[str]:
    """The modes `--mode NAME` runs."""
    if name in MODE_SETS:
        return MODE_SETS[name]
    named = [m.strip() for m in name.split(",") if m.strip()]
    if not named or any(m not in MODES for m in named):
        choices = ", ".join([*MODE_SETS, *(m for m in MODES if m not in MODE_SETS)])
        raise BadInput(f"unknown --mode {name!r} — one of: {choices}, or a list such as plain,rag,search")
    return [m for m in MODES if m in named]  # in the order of MODES, each once


def eval_row(assistant: Assistant, task: QATask, item: EvalItem) -> dict[str, Any]:
    """Ask one question in one mode and score it."""
    search, multi = MODES[item.mode]
    found: dict[int, Source] = {}
    final = None
    start = time.perf_counter()
    question = item.example.question
    plain = item.mode == "plain"
    events = (
        assistant.baseline(question)
        if plain
        else assistant.ask(question, search=search, multi=multi, show_uncertain=True)  # scored: the best candidate
    )
    for event in events:
        if isinstance(event, ToolReturned):
            found.update((s.n, s) for s in event.sources)
        elif isinstance(event, Answer):
            final = event
    seconds = time.perf_counter() - start
    if final is None:
        raise RuntimeError("the loop ended without an answer")
    scores = task.evaluate(item.example, final.short_answer, final.answer)
    shown = [c["text"] for c in final.context]
    cited = [f"{found[s.n].title} {found[s.n].text}" for s in final.sources if s.n in found]
    gold = item.example.answers
    yes_no = is_yes_no(gold)  # a yes/no answer is in no text: scored, but left out of the passage checks
    return {
        **_head(item),
        "prediction": final.short_answer,
        "answer": final.answer,
        "em": scores.em,
        "f1": round(scores.f1, 4),
        "match": scores.match,
        "answer_in_context": answer_in_context(shown, gold) if search and not yes_no else None,
        "shown_ids": [found[n].id for n in final.shown if n in found],  # what the model read (gold-passage checks)
        "citation_right": answer_in_context(cited, gold) if cited and not yes_no else None,
        "confidence": final.confidence,
        "uncertain": final.uncertain if final.confidence is not None else None,
        "looks": [_look_row(task, item.example, look, found, search and not yes_no) for look in final.looks],
        "sources": [s.public() for s in final.sources],
        "context": final.context,
        "steps": len(final.steps),
        "queries": [s["arguments"].get("query") for s in final.steps if s["tool"] == "web_search"],
        "prompt_tokens": final.usage.get("prompt_tokens", 0),
        "completion_tokens": final.usage.get("completion_tokens", 0),
        "seconds": round(seconds, 3),
        "notes": final.notes,
        "lang": final.lang,
        "lang_confidence": final.lang_confidence,
        "route": final.route,
        "code": code_version(),
        "error": None,
    }


def _look_row(
    task: QATask, example: QAExample, look: dict[str, Any], found: dict[int, Source], passages: bool
) -> dict[str, Any]:
    """One look as the row keeps it, scored as the row is, so that evals/confidence.py can replay the answer,
    its scores and its cost at another threshold: EM and F1 of its short answer, whether its prompt held a gold
    alias and whether a source it cites does (None where the row's are None); the ids of the passages it was
    shown (`shown_ids`, as the row's for its final step); the texts are dropped."""
    scores = task.evaluate(example, look["short_answer"], look["short_answer"])
    gold = example.answers
    shown = [c["text"] for c in look.get("context", [])]
    cited = [f"{found[n].title} {found[n].text}" for n in look.get("cited", []) if n in found]
    return {
        **{k: v for k, v in look.items() if k != "context"},
        "shown_ids": [found[c["n"]].id for c in look.get("context", []) if c["n"] in found],
        "em": scores.em,
        "f1": round(scores.f1, 4),
        "answer_in_context": answer_in_context(shown, gold) if passages else None,
        "citation_right": answer_in_context(cited, gold) if cited and passages else None,
    }


def _head(item: EvalItem) -> dict[str, Any]:
    e = item.example
    return {"id": e.id, "mode": item.mode, "question": e.question, "gold": e.answers}


def error_row(item: EvalItem, message: str) -> dict[str, Any]:
    """The row of a question that could not be answered in a mode (left out of the scores, counted as error)."""
    return {**_head(item), "error": message}


def run_config(assistant: Assistant, dataset: Path) -> dict[str, Any]:
    """What a run measures; stored as run.json and checked on resume."""
    s = assistant.settings
    chain = s.search_chain()
    return {
        "row_format": ROW_FORMAT,
        "dataset": str(dataset.expanduser().resolve()),
        "model": assistant.model.name,
        "backend": assistant.spec.backend,
        "search": assistant.search.name if assistant.search else "none",
        "loop": "multi" if assistant.multi_step() else "single",
        **s.model_dump(mode="json", include=set(ANSWER_SETTINGS)),
        "confidence_threshold": assistant.judging().threshold,  # the one in force: set, or the preset's
        "second_look": assistant.judging().second_look,
        "index": str(s.index_path().resolve()) if "local" in chain else None,  # as the dataset: resumable from anywhere
        "searxng_url": s.searxng_url if "searxng" in chain else None,
        "code": code_version(),
    }


@functools.cache
def code_version() -> str:
    """The commit of the checkout the package runs from, "+dirty" when it has uncommitted changes, or the package
    version outside a git checkout: what a published table must name."""
    import subprocess

    import assistant

    root = Path(assistant.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return assistant.__version__
    if head.returncode != 0:
        return assistant.__version__
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def read_run_config(out: Path) -> dict[str, Any] | None:
    """The run.json in `out` (None when there is none); AssistantError when it is cut off or not an object."""
    path = out / "run.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise AssistantError(
            f"cannot read {path}: {e.strerror or e} — fix its permissions, or pass another --out"
        ) from None
    except ValueError as e:  # cut off by a kill mid-write (before writes were atomic), or edited by hand
        raise _unreadable(out, str(e)) from None
    if not isinstance(config, dict):
        raise _unreadable(out, "not a JSON object")
    return config


def _unreadable(out: Path, why: str) -> AssistantError:
    return AssistantError(
        f"{out / 'run.json'} is unreadable ({why}): it records the settings of the rows in {out / 'results.jsonl'} — "
        "delete it if those rows were made with the settings you pass now (it is written again), "
        "or pass another --out"
    )


def check_config(out: Path, config: dict[str, Any]) -> None:
    """Write run.json, or check that the run already in `out` measured the same thing."""
    path = out / "run.json"
    old = read_run_config(out)
    if old is not None:
        diff = [k for k in CHECKED if old.get(k) != config.get(k)]
        if diff:
            there = {k: repr(old[k]) if k in old else "not recorded" for k in diff}  # an older run.json has fewer
            what = ", ".join(f"{k}: {there[k]} there, {config.get(k)!r} now" for k in diff)
            raise BadInput(f"{out} holds another run ({what}) — pass another --out, or delete {out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # written whole, then renamed: a kill cannot leave it half-written
    tmp.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


@dataclass
class EvalRun:
    """An eval of `task` in `modes`, writing to `out`."""

    task: QATask
    modes: list[str]
    out: Path
    assistants: PerThread[Assistant]
    concurrency: int = 1
    retry_errors: bool = False
    config: dict[str, Any] | None = None  # run_config(): checked against run.json (or written) under the lock

    def items(self) -> list[EvalItem]:
        """Every (question, mode), mode by mode.

        Not question by question: llama.cpp reuses the KV cache of the previous prompt's prefix, so a question's
        modes back to back would make the second look faster and (cached prefill computes in other batch sizes)
        can answer differently even at temperature 0. Where the loop is single-step, `search` is `rag` by
        construction: its rows are rag's, copied and marked `same_as`, not recomputed.
        """
        return [EvalItem(e, m) for m in self.modes for e in self.task.examples]

    def _copies_rag(self, item: EvalItem) -> bool:
        """Whether `search` is `rag` by construction here (a single-step loop), so its row is rag's, copied."""
        return item.mode == "search" and "rag" in self.modes and not self.assistants.get().multi_step()

    def run(self, progress: Progress | None = None) -> list[dict[str, Any]]:
        """Answer what results.jsonl lacks; return this selection's rows (the log's, in item order)."""
        items = self.items()
        with ResultLog(self.out / "results.jsonl", key=lambda r: (r["id"], r["mode"])) as log:
            if self.config is not None:  # under the lock: two runs on one folder cannot both pass it
                check_config(self.out, self.config)
            for warning in log.warnings:
                if progress:
                    progress.note(warning)
            if self.retry_errors:
                log.drop(lambda r: bool(r.get("error")))
            todo = [i for i in items if i.key not in log.done]
            copies = [i for i in todo if self._copies_rag(i)]
            todo = [i for i in todo if i not in copies]
            if progress:
                progress.start(len(todo))

            def work(item: EvalItem) -> dict[str, Any]:
                return eval_row(self.assistants.get(), self.task, item)

            run_tasks(todo, work, error_row, log, concurrency=self.concurrency, progress=progress)
            rag = {r["id"]: r for r in log.rows if r["mode"] == "rag" and not r.get("error")}
            for item in copies:
                if item.example.id in rag:
                    log.append({**rag[item.example.id], "mode": "search", "same_as": "rag"})
            by_key = {(r["id"], r["mode"]): r for r in log.rows}
        return [by_key[i.key] for i in items if i.key in by_key]
