"""Confidence in an eval run: how well it tells right answers from wrong ones, and which threshold to use.

For the rows of one mode (default `search`) of an `assistant eval` run, it prints:

- AUROC of the confidence for correctness (EM), with a 95% bootstrap interval (2000 resamples of questions,
  seed 0): the chance that a right answer is more confident than a wrong one;
- a risk-coverage table: as the threshold moves, the share of questions answered unflagged (coverage) and the
  accuracy of those answers, and at each threshold the answers given (correct, confidently wrong: wrong and not
  flagged) and flagged (abstained; of them, right);
- with `--choose`, the threshold by the rule below; and writes the risk-coverage plot (`--plot`, default
  DIR/confidence.png).

Each row keeps every look the loop took (`looks`: short answer, confidence, EM). A run made with
`--confidence-threshold 1.0` took a second look at every question, so a lower threshold is replayed exactly as the
loop would have answered with it: the first look when it reaches the threshold, else the one the loop keeps
(`settle`: the second only when no source stated the first and the second is more confident). For a run
made with threshold T, thresholds up to T replay exactly; above T, a question whose first look reached T had no
second look to replay and keeps its first. Rows written while the loop kept the more confident look replay
under today's rule too: each look is recorded whole, so the answer the loop would give now is recomputed.

The rule (`choose`): the lowest threshold at which at most half the wrong answers go unflagged (the issue's
goal: confidently wrong at most half of all wrong), which flags as few right answers as that allows; where that
leaves fewer than `min_answered` (30%) of questions answered unflagged, the highest threshold that keeps them.
Choose on one dataset (HotpotQA dev) and report on another (wiki-dev300), so the reported trade-off is not fitted.

    python -m assistant.evals.confidence runs/hotpot100-smol --choose          # pick a threshold
    python -m assistant.evals.confidence runs/tqa300-smol --threshold 0.42     # report at it
    python -m assistant.evals.confidence runs/tqa300-smol --threshold 0.42 --replay-out runs/tqa300-smol-at-0.42

`--replay-out` writes the whole run (every mode) as it would have been at the threshold, from a run made at that
threshold or a higher one: each row's answer, scores and cost from the look the loop would have kept, less the
cost of a second look it would not have taken (`replayed_row`), with the eval's own report of those rows. So one
run at 1.0 gives the product at its default threshold, paired against plain, and the cost of the second look.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from assistant.confidence import Look, settle
from assistant.jsonl import lines as jsonl_lines

BOOTSTRAP = {"samples": 2000, "seed": 0}
TABLE_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass
class Outcome:
    """One question at a threshold: the confidence of the answer the loop gives, and whether it is right."""

    confidence: float
    correct: bool


@dataclass
class AtThreshold:
    """What a threshold does to a run's answers (counts of questions)."""

    threshold: float
    questions: int
    answered: int  # not flagged
    correct: int  # not flagged and right
    confidently_wrong: int  # not flagged and wrong
    abstained: int  # flagged uncertain
    flagged_right: int  # flagged, though right
    wrong: int  # wrong, flagged or not

    @property
    def coverage(self) -> float:
        """Share of questions answered unflagged."""
        return self.answered / self.questions if self.questions else 0.0

    @property
    def accuracy(self) -> float | None:
        """Accuracy of the answers given unflagged."""
        return self.correct / self.answered if self.answered else None


def taken_looks(looks: list[dict[str, Any]], threshold: float, second_look: bool = True) -> list[dict[str, Any]]:
    """The looks the loop takes at `threshold`: the first, and the others only when it is below (and the second
    look is on)."""
    return looks if second_look and looks[0]["confidence"] < threshold else looks[:1]


def kept_look(taken: list[dict[str, Any]]) -> dict[str, Any]:
    """The look whose answer the loop keeps among those it took, with the confidence it ends with, by the loop's
    own rule (assistant/confidence.py, `settle`)."""
    looks = [Look(t["short_answer"], t["confidence"], t.get("token_probability"), t["supported"]) for t in taken]
    kept, confidence = settle(looks)
    return {**taken[kept], "confidence": confidence}


def replay(row: dict[str, Any], threshold: float) -> Outcome:
    """The answer the loop gives `row`'s question at `threshold`, from the looks the row recorded."""
    looks = row.get("looks") or []
    if not looks:
        return Outcome(float(row["confidence"]), bool(row["em"]))
    chosen = kept_look(taken_looks(looks, threshold))
    return Outcome(float(chosen["confidence"]), bool(chosen["em"]))


def first_look_only(row: dict[str, Any]) -> dict[str, Any]:
    """`row` as a loop without the second look (`second_look = false`) would have kept its looks: the first."""
    return {**row, "looks": (row.get("looks") or [])[:1]}


def replayed_row(row: dict[str, Any], threshold: float, second_look: bool = True) -> dict[str, Any]:
    """`row` as the loop would have written it at `threshold` (`replay`'s choice of look; the first alone without
    `second_look`): its prediction, scores, confidence and cost from the chosen look, less the cost of a look not
    taken. `match` scores the whole answer, which looks do not keep: it is None. Where the replay takes fewer
    looks than the row did, the row's passages (`context`, `sources`) were those of a look not taken: they are
    None, and `shown_ids` is the last look taken's (None in rows written before looks kept them). Rows without
    looks (plain, closed) come back as they are."""
    looks = row.get("looks") or []
    if not looks or row.get("error"):
        return row
    taken = taken_looks(looks, threshold, second_look)
    chosen = kept_look(taken)
    skipped = looks[len(taken) :]
    less = {k: sum(look.get(k, 0) for look in skipped) for k in ("prompt_tokens", "completion_tokens", "seconds")}
    steps = {"shown_ids": taken[-1].get("shown_ids"), "context": None, "sources": None} if skipped else {}
    return {
        **row,
        **steps,
        "prediction": chosen["short_answer"],
        "answer": None,
        "em": chosen["em"],
        "f1": chosen["f1"],
        "match": None,
        "answer_in_context": chosen.get("answer_in_context"),
        "citation_right": chosen.get("citation_right"),
        "confidence": chosen["confidence"],
        "uncertain": chosen["confidence"] < threshold,
        "looks": taken,
        "prompt_tokens": row["prompt_tokens"] - less["prompt_tokens"],
        "completion_tokens": row["completion_tokens"] - less["completion_tokens"],
        "seconds": round(row["seconds"] - less["seconds"], 3),
        "replayed_at": threshold,
    }


def write_replay(folder: Path, threshold: float, out: Path, second_look: bool = True) -> dict[str, Any]:
    """Replay every row of the run in `folder` at `threshold` (no higher than the run's own) into `out`: its
    results.jsonl, a run.json that says so, and the eval report (evals/report.py) of those rows; without
    `second_look`, as a loop that takes none."""
    from assistant.evals.report import write_report

    rows, config = read_run(folder)
    ran = float(config["confidence_threshold"] if config.get("confidence_threshold") is not None else 0.5)
    if threshold > ran:
        raise ValueError(f"a run at threshold {ran} replays thresholds up to it, not {threshold}")
    if any("prompt_tokens" not in look for r in rows for look in r.get("looks") or []):
        raise ValueError(f"{folder} was written before looks kept their cost (row_format < 3): it cannot be replayed")
    replayed = [replayed_row(r, threshold, second_look) for r in rows]
    out.mkdir(parents=True, exist_ok=True)
    source = {"folder": str(folder), "threshold": ran}
    second_look = second_look and config.get("second_look") is not False  # a run that took none replays none
    config = {**config, "confidence_threshold": threshold, "second_look": second_look, "replayed_from": source}
    (out / "run.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (out / "results.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in replayed))
    modes = [m for m in ("closed", "plain", "rag", "search") if any(r["mode"] == m for r in replayed)]
    return write_report(out, replayed, modes, config)


def at_threshold(rows: Sequence[dict[str, Any]], threshold: float) -> AtThreshold:
    """The counts at `threshold`, each question's answer replayed (`replay`)."""
    outcomes = [replay(r, threshold) for r in rows]
    kept = [o for o in outcomes if o.confidence >= threshold]
    flagged = [o for o in outcomes if o.confidence < threshold]
    return AtThreshold(
        threshold=threshold,
        questions=len(outcomes),
        answered=len(kept),
        correct=sum(o.correct for o in kept),
        confidently_wrong=sum(not o.correct for o in kept),
        abstained=len(flagged),
        flagged_right=sum(o.correct for o in flagged),
        wrong=sum(not o.correct for o in outcomes),
    )


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float | None:
    """The area under the ROC curve of `scores` for `labels` (Mann-Whitney U, ties counted half); None when
    one class is empty."""
    right = [s for s, y in zip(scores, labels, strict=True) if y]
    wrong = [s for s, y in zip(scores, labels, strict=True) if not y]
    if not right or not wrong:
        return None
    import numpy as np

    r, w = np.asarray(right)[:, None], np.asarray(wrong)[None, :]
    return float(((r > w).sum() + 0.5 * (r == w).sum()) / (len(right) * len(wrong)))


def auroc_interval(scores: Sequence[float], labels: Sequence[bool]) -> dict[str, float | int | None]:
    """AUROC with its 95% percentile interval from resampling questions (resamples with one class are skipped)."""
    import numpy as np

    point = auroc(scores, labels)
    rng = np.random.default_rng(BOOTSTRAP["seed"])
    n = len(scores)
    values = []
    for _ in range(BOOTSTRAP["samples"] if point is not None else 0):
        pick = rng.integers(0, n, size=n)
        value = auroc([scores[i] for i in pick], [labels[i] for i in pick])
        if value is not None:
            values.append(value)
    low, high = (float(v) for v in np.percentile(values, [2.5, 97.5])) if values else (None, None)
    return {"auroc": point, "low": low, "high": high, "n": n}


def choose(rows: Sequence[dict[str, Any]], min_answered: float = 0.3) -> float:
    """The threshold by the module's rule, on a grid of hundredths."""
    grid = [i / 100 for i in range(101)]
    counts = [at_threshold(rows, t) for t in grid]
    keeps = [c for c in counts if c.coverage >= min_answered]
    for c in counts:
        if 2 * c.confidently_wrong <= c.wrong:
            return c.threshold if c.coverage >= min_answered or not keeps else keeps[-1].threshold
    return keeps[-1].threshold if keeps else 0.0


def summary(rows: Sequence[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """AUROC (of the answers given at `threshold`), the counts at `threshold` and the risk-coverage table."""
    outcomes = [replay(r, threshold) for r in rows]
    here = at_threshold(rows, threshold)
    return {
        "threshold": threshold,
        **auroc_interval([o.confidence for o in outcomes], [o.correct for o in outcomes]),
        "at_threshold": {**asdict(here), "coverage": round(100 * here.coverage, 1)},
        "risk_coverage": [_line(at_threshold(rows, t)) for t in sorted({*TABLE_THRESHOLDS, threshold})],
    }


def _line(c: AtThreshold) -> dict[str, Any]:
    accuracy = c.accuracy
    return {
        "threshold": c.threshold,
        "coverage": round(100 * c.coverage, 1),
        "accuracy": None if accuracy is None else round(100 * accuracy, 1),
        "answered": c.answered,
        "correct": c.correct,
        "confidently_wrong": c.confidently_wrong,
        "abstained": c.abstained,
        "flagged_right": c.flagged_right,
    }


def markdown(s: dict[str, Any], title: str = "") -> str:
    """The summary as Markdown: the AUROC line, the counts at the threshold, the risk-coverage table."""
    a = s["at_threshold"]
    interval = "—" if s["auroc"] is None else f"{s['auroc']:.3f} [{s['low']:.3f}, {s['high']:.3f}]"
    lines = [
        *([title, ""] if title else []),
        f"AUROC of confidence for correctness (EM): {interval} over {s['n']} questions "
        f"(95% bootstrap interval, {BOOTSTRAP['samples']} resamples, seed {BOOTSTRAP['seed']}).",
        "",
        f"At the threshold {s['threshold']:.2f}: {a['answered']} answered ({a['coverage']}%), {a['correct']} "
        f"correct, {a['confidently_wrong']} confidently wrong (of {a['wrong']} wrong), {a['abstained']} abstained "
        f"(flagged uncertain), of them {a['flagged_right']} right.",
        "",
        "| threshold | coverage | accuracy of answered | answered | correct | confidently wrong | abstained | "
        "flagged but right |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in s["risk_coverage"]:
        accuracy = "—" if r["accuracy"] is None else f"{r['accuracy']:.1f}"
        mark = " (in force)" if r["threshold"] == s["threshold"] else ""
        lines.append(
            f"| {r['threshold']:.2f}{mark} | {r['coverage']:.1f} | {accuracy} | {r['answered']} | {r['correct']} | "
            f"{r['confidently_wrong']} | {r['abstained']} | {r['flagged_right']} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], threshold: float, path: Path, title: str = "") -> None:
    """The risk-coverage curve: accuracy of the answers given against the share of questions answered, as the
    threshold moves; the threshold in force is marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [at_threshold(rows, i / 100) for i in range(101)]
    points = [(100 * c.coverage, 100 * c.accuracy) for c in counts if c.accuracy is not None]
    here = at_threshold(rows, threshold)
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.plot([x for x, _ in points], [y for _, y in points], drawstyle="steps-post", color="C0")
    if here.accuracy is not None:
        ax.scatter([100 * here.coverage], [100 * here.accuracy], color="C3", zorder=3, label=f"threshold {threshold}")
        ax.legend(frameon=False, loc="upper right")
    ax.set_xlabel("questions answered unflagged (%)")
    ax.set_ylabel("accuracy of the answers given (EM, %)")
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 100)
    ax.set_title(title or "risk-coverage", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_run(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every row of an eval run, and its run.json."""
    config = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    lines = jsonl_lines((folder / "results.jsonl").read_text(encoding="utf-8"))
    return [json.loads(line) for line in lines if line.strip()], config


def read_rows(folder: Path, mode: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows of `mode` that carry a confidence, and the run's run.json."""
    rows, config = read_run(folder)
    return [r for r in rows if r.get("mode") == mode and not r.get("error") and r.get("confidence") is not None], config


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m assistant.evals.confidence", description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path, help="the --out folder of an `assistant eval` run")
    parser.add_argument("--mode", default="search", help="which mode's rows (default: search)")
    parser.add_argument("--threshold", type=float, help="report at this threshold (default: the run's)")
    parser.add_argument("--choose", action="store_true", help="choose the threshold by the rule, and report at it")
    parser.add_argument("--min-answered", type=float, default=0.3, help="share to keep answered unflagged (0.3)")
    parser.add_argument("--plot", type=Path, help="where to write the plot (default: FOLDER/confidence.png)")
    parser.add_argument(
        "--no-second-look",
        action="store_true",
        help="as a loop without the second look would have answered (second_look = false): each row's first look",
    )
    parser.add_argument(
        "--replay-out",
        type=Path,
        help="also write the whole run replayed at the threshold (rows, run.json, report) into this folder",
    )
    args = parser.parse_args(argv)
    rows, config = read_rows(args.folder, args.mode)
    rows = [first_look_only(r) for r in rows] if args.no_second_look else rows
    if not rows:
        sys.exit(f"error: no {args.mode} rows with a confidence in {args.folder / 'results.jsonl'}")
    threshold = args.threshold if args.threshold is not None else float(config.get("confidence_threshold") or 0.5)
    if args.choose:
        threshold = choose(rows, args.min_answered)
        print(
            f"chosen threshold: {threshold:.2f} (rule: evals/confidence.py `choose`, min answered {args.min_answered})"
        )
    dataset = Path(str(config.get("dataset", "?"))).name
    title = f"{dataset} · {config.get('model')} · {args.mode} · code {config.get('code')}"
    title += " · without the second look" if args.no_second_look else ""
    print(markdown(summary(rows, threshold), f"## {title}"), end="")
    plot(rows, threshold, args.plot or args.folder / "confidence.png", title)
    if args.replay_out:
        from assistant.evals.report import markdown as report_table

        try:
            replayed = write_replay(args.folder, threshold, args.replay_out, not args.no_second_look)
        except ValueError as e:
            sys.exit(f"error: {e}")
        print(f"\n## The run replayed at threshold {threshold:.2f} ({args.replay_out})\n")
        print(report_table(replayed), end="")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
