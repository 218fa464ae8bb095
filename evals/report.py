"""The eval report: scores per mode, the uplift of search with a paired bootstrap interval, latency and tokens.

`write_report(out, rows, modes, config)` writes `report.json` (everything, numbers in percent and seconds),
`report.md` (the same as tables) and `report.png` (EM/F1/match bars per mode; latency per mode). Modes whose rows
carry a confidence also get its AUROC and risk-coverage table (evals/confidence.py, which draws the plot). Rows with an
`error` are counted but left out of the scores. Uplifts are paired: over the questions answered without error
in both modes, the mean difference of per-question scores, with a 95% interval from resampling those questions
(2000 resamples, seed 0; evals/scoring.py `paired_bootstrap`).

    python -m assistant.evals.report runs/eval-dev300    # rebuild the report from results.jsonl and run.json
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assistant.evals.scoring import paired_bootstrap
from assistant.jsonl import rows as read_rows

METRICS = ("em", "f1", "match")
# (better?, baseline): plain is the reference retrieve-then-answer script (assistant/baseline.py)
PAIRS = (("search", "closed"), ("search", "rag"), ("rag", "closed"), ("rag", "plain"), ("search", "plain"))
BOOTSTRAP = {"samples": 2000, "seed": 0}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return round(float(np.percentile(values, q)), 3)


def _mean(values: list[float], scale: float = 1.0, digits: int = 2) -> float | None:
    return round(scale * sum(values) / len(values), digits) if values else None


def _uplift(base: dict[str, Any], better: dict[str, Any], ids: list[str], metric: str) -> dict[str, Any]:
    """Mean paired difference of `metric` in points, with its bootstrap interval."""
    a, b = ([float(rows[i][metric]) for i in ids] for rows in (base, better))
    interval = paired_bootstrap(a, b, **BOOTSTRAP)
    return {k: v if k == "n" else round(100 * v, 2) for k, v in asdict(interval).items()}


def summarize(rows: list[dict[str, Any]], modes: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """The report's numbers from results rows (one per question and mode)."""
    ok = {m: {r["id"]: r for r in rows if r["mode"] == m and not r.get("error")} for m in modes}
    per_mode: dict[str, Any] = {}
    for m in modes:
        good = list(ok[m].values())
        in_ctx = [float(r["answer_in_context"]) for r in good if r.get("answer_in_context") is not None]
        cited = [float(r["citation_right"]) for r in good if r.get("citation_right") is not None]
        seconds = [float(r["seconds"]) for r in good]
        per_mode[m] = {
            "n": len(good),
            "errors": sum(1 for r in rows if r["mode"] == m and r.get("error")),
            **{k: _mean([float(r[k]) for r in good if r.get(k) is not None], 100) for k in METRICS},
            "answer_in_context": _mean(in_ctx, 100),
            "citation_precision": _mean(cited, 100),
            "cited": len(cited),
            "latency_p50": _percentile(seconds, 50),
            "latency_p95": _percentile(seconds, 95),
            **{k: _mean([float(r[k]) for r in good], digits=1) for k in ("prompt_tokens", "completion_tokens")},
            "failures": failures(good),
            "confidence": _confidence(good, config),
        }
    uplift: dict[str, Any] = {}
    for better, base in PAIRS:
        if better not in ok or base not in ok:
            continue
        ids = [i for i in ok[base] if i in ok[better]]
        scored = [k for k in METRICS if all(ok[m][i].get(k) is not None for m in (base, better) for i in ids)]
        uplift[f"{better}_vs_{base}"] = {k: _uplift(ok[base], ok[better], ids, k) for k in scored}
    questions = len({r["id"] for r in rows})
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    code = sorted({str(r.get("code") or "not recorded") for r in rows if r["mode"] in modes})
    return {
        "config": {**config, "modes": modes, "questions": questions, "created": created, "row_code": code},
        "modes": per_mode,
        "uplift": uplift,
        "bootstrap": BOOTSTRAP,
    }


def _confidence(rows: list[dict[str, Any]], config: dict[str, Any]) -> dict[str, Any] | None:
    """AUROC, the counts at the run's threshold and the risk-coverage table (evals/confidence.py), for rows that
    carry a confidence."""
    scored = [r for r in rows if r.get("confidence") is not None]
    if not scored:
        return None
    from assistant.evals.confidence import summary

    return summary(scored, float(config.get("confidence_threshold") or 0.5))


def failures(rows: list[dict[str, Any]]) -> dict[str, int] | None:
    """Why answers missed (EM 0), for modes that searched: where to improve the loop."""
    if not any(r.get("answer_in_context") is not None for r in rows):
        return None
    wrong = [r for r in rows if not r["em"]]
    if any(r.get("match") is None for r in wrong):  # replayed rows (evals/confidence.py) carry no match
        return {"retrieval_missed": sum(1 for r in wrong if not r.get("answer_in_context"))}
    return {
        "retrieval_missed": sum(1 for r in wrong if not r.get("answer_in_context")),
        "in_context_not_extracted": sum(1 for r in wrong if r.get("answer_in_context") and not r.get("match")),
        "extracted_but_not_exact": sum(1 for r in wrong if r.get("answer_in_context") and r.get("match")),
    }


def _num(v: float | None, fmt: str = "{:.1f}", sign: bool = False) -> str:
    if v is None:
        return "—"
    text = fmt.format(v)
    return f"+{text}" if sign and v >= 0 else text


def _selection(c: dict[str, Any]) -> str:
    if c.get("limit") is None:
        return ""
    return f" (the first {c['limit']})" if c.get("seed") is None else f" (a sample of {c['limit']}, seed {c['seed']})"


def _replayed(c: dict[str, Any]) -> list[str]:
    """The line that says a report is of rows replayed at another confidence threshold (evals/confidence.py)."""
    source = c.get("replayed_from")
    if not source:
        return []
    return [
        f"Replayed at confidence threshold {c.get('confidence_threshold')}"
        + ("" if c.get("second_look", True) else ", without the second look,")
        + f" from the rows of {source['folder']} (run at {source['threshold']}): each answer, its scores and its "
        "cost are those of the look the loop keeps at this threshold; match scores the whole answer, which looks "
        "do not keep (—).",
        "",
    ]


def markdown(summary: dict[str, Any]) -> str:
    """report.md: a header line, the table per mode, the uplift table and what the columns mean."""
    c = summary["config"]
    lines = [
        f"# Eval: {Path(c.get('dataset', '?')).name} — {c.get('model')} ({c.get('backend')}), search {c.get('search')}",
        "",
        f"{c['questions']} questions{_selection(c)} · modes {', '.join(c['modes'])} · loop {c.get('loop')} · "
        f"{c['created']}",
        "",
        f"Rows written by the code of: {', '.join(c.get('row_code') or ['not recorded'])}",
        "",
        *_replayed(c),
        "| mode | n | EM | F1 | match | answer in context | citation precision | latency p50 | latency p95 | "
        "tokens/question | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode, s in summary["modes"].items():
        tokens = "—" if s["prompt_tokens"] is None else f"{s['prompt_tokens']:.0f} + {s['completion_tokens']:.0f}"
        lat = [_num(s[k], "{:.2f} s") for k in ("latency_p50", "latency_p95")]
        precision = _num(s.get("citation_precision")) + (f" ({s['cited']})" if s.get("cited") else "")
        scores = [_num(s[k]) for k in (*METRICS, "answer_in_context")] + [precision]
        lines.append(f"| {mode} | {s['n']} | {' | '.join(scores)} | {' | '.join(lat)} | {tokens} | {s['errors']} |")
    if summary["uplift"]:
        b = summary["bootstrap"]
        lines += [
            "",
            f"Uplift in points, mean over questions answered in both modes, with a paired bootstrap 95% interval "
            f"({b['samples']} resamples of questions, seed {b['seed']}):",
            "",
            "| comparison | n | EM | F1 | match |",
            "|---|---|---|---|---|",
        ]
        for name, u in summary["uplift"].items():
            better, base = name.split("_vs_")
            cells = [
                f"{_num(u[k]['mean'], sign=True)} [{_num(u[k]['low'])}, {_num(u[k]['high'])}]" if k in u else "—"
                for k in METRICS
            ]
            lines.append(f"| {better} − {base} | {u['em']['n']} | {' | '.join(cells)} |")
    missed = {m: s["failures"] for m, s in summary["modes"].items() if s.get("failures")}
    if missed:
        lines += [
            "",
            "Answers with EM 0, by cause: retrieval missed (no gold alias in the prompt's passages); in context but "
            "not extracted (an alias was in the passages, not in the answer); extracted but not exact (the answer "
            "holds an alias, the short answer is not exactly one):",
            "",
            "| mode | retrieval missed | in context, not extracted | extracted, not exact |",
            "|---|---|---|---|",
        ]
        for mode, f in missed.items():
            split = [str(f.get(k, "—")) for k in ("in_context_not_extracted", "extracted_but_not_exact")]
            lines.append(f"| {mode} | {f['retrieval_missed']} | {' | '.join(split)} |")
    for mode, s in summary["modes"].items():
        if s.get("confidence"):
            from assistant.evals.confidence import markdown as confidence_table

            lines += ["", confidence_table(s["confidence"], f"Confidence, {mode} (evals/confidence.py):").rstrip()]
    if c.get("loop") == "single" and "search" in c["modes"]:
        lines += [
            "",
            "This run used the single-step loop (`loop` single, or a model not trusted with tools): `search` is the "
            "same as `rag`.",
        ]
    lines += [
        "",
        "EM and F1 score the short answer with TriviaQA's official normalization (max over gold aliases); match: a "
        "gold alias occurs, normalized, as a phrase in the whole answer (Self-RAG's metric); answer in context: a "
        "gold alias occurs in the passages of the final prompt; citation precision: of the answers that cite a source "
        "(their number in brackets), the share whose cited sources hold a gold alias. Yes/no questions are scored "
        "but left out of answer in context and citation precision. Scores in percent; rows with errors are left "
        "out.",
    ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], summary: dict[str, Any], path: Path) -> None:
    """report.png: EM/F1/match bars per mode, and each mode's latencies as a box with the points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(summary["modes"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [3, 2]})
    width = 0.8 / len(METRICS)
    for j, metric in enumerate(METRICS):
        values = [summary["modes"][m][metric] or 0.0 for m in modes]
        xs = [i + (j - (len(METRICS) - 1) / 2) * width for i in range(len(modes))]
        bars = left.bar(xs, values, width, label=metric.upper() if metric != "match" else "match")
        left.bar_label(bars, fmt="%.0f", fontsize=8, padding=2)
    left.set_xticks(range(len(modes)), [f"{m}\n(n={summary['modes'][m]['n']})" for m in modes])
    left.set_ylabel("score (%)")
    left.set_ylim(0, 115)  # room for the legend above 100
    left.set_yticks(range(0, 101, 20))
    left.legend(loc="upper left", frameon=False, ncols=3)
    left.set_title("Scores by mode")
    seconds = [[float(r["seconds"]) for r in rows if r["mode"] == m and not r.get("error")] for m in modes]
    right.boxplot(seconds, whis=(0, 100), showfliers=False)  # whiskers span every point drawn over the box
    right.set_xticks(range(1, len(modes) + 1), modes)
    for i, values in enumerate(seconds, 1):
        right.scatter([i] * len(values), values, s=10, alpha=0.5, color="C0", zorder=3)
    right.set_ylabel("seconds per question")
    right.set_ylim(bottom=0)
    right.set_title("Latency by mode")
    c = summary["config"]
    fig.suptitle(f"{Path(c.get('dataset', '?')).name} · {c.get('model')} · search {c.get('search')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(out: Path, rows: list[dict[str, Any]], modes: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """Write report.json, report.md and report.png into `out`; returns the summary."""
    summary = summarize(rows, modes, config)
    (out / "report.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(summary), encoding="utf-8")
    plot(rows, summary, out / "report.png")
    return summary


if __name__ == "__main__":  # pragma: no cover
    from assistant.errors import AssistantError
    from assistant.evaluate import read_run_config

    folder = Path(sys.argv[1])
    try:
        config = read_run_config(folder)
    except AssistantError as e:
        sys.exit(f"error: {e}")
    if config is None:
        sys.exit(f"error: {folder / 'run.json'} not found — pass the --out folder of an `assistant eval` run")
    rows = read_rows(folder / "results.jsonl")
    modes = [m for m in ("closed", "plain", "rag", "search") if any(r["mode"] == m for r in rows)]
    print(markdown(write_report(folder, rows, modes, config)), end="")
