"""Compare two eval runs row by row: which (question, mode) rows changed what the model said or was shown.

A refactor should leave every row as it was; a fix should change only the rows it explains. Then, for each mode
both runs have, the paired change in EM and F1 (after − before, in points) over the questions both answered
without error, with a 95% bootstrap interval (evals/report.py's): how far a later commit moved a measured starting
point on the same questions.

    python -m assistant.evals.compare runs/before/results.jsonl runs/after/results.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from assistant.evals.report import BOOTSTRAP
from assistant.evals.scoring import paired_bootstrap
from assistant.jsonl import rows as read_rows

# What a row's answer and its cost are; timings and notes are left out (they differ from run to run).
FIELDS = ("prediction", "answer", "em", "f1", "prompt_tokens", "completion_tokens", "steps", "queries")


def load(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The rows of a results.jsonl by (id, mode)."""
    rows = read_rows(path)
    return {(r["id"], r["mode"]): r for r in rows}


def differences(before: dict[str, Any], after: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The fields in which two rows of the same question and mode differ (cited source ids included)."""
    diff = {f: (before.get(f), after.get(f)) for f in (*FIELDS, "answer_in_context") if before.get(f) != after.get(f)}
    cited = [[s["id"] for s in row.get("sources") or []] for row in (before, after)]
    if cited[0] != cited[1]:
        diff["sources"] = (cited[0], cited[1])
    return diff


def compare(before: Path, after: Path) -> str:
    """One line per changed row, then a summary line."""
    a, b = load(before), load(after)
    lines, same = [], 0
    for key in sorted(a.keys() & b.keys()):
        diff = differences(a[key], b[key])
        if diff:
            lines.append(f"{key[0]} ({key[1]}): {json.dumps(diff, ensure_ascii=False)}")
        else:
            same += 1
    only = len(a.keys() ^ b.keys())
    lines.append(f"{same} rows identical, {len(lines)} differ, {only} in only one run")
    return "\n".join(lines)


def paired_change(before: Path, after: Path) -> str:
    """A markdown table: per mode of both runs, after − before in EM and F1 (points) over the questions both
    answered without error, with the bootstrap interval."""
    a, b = load(before), load(after)
    lines = ["| mode | n | before EM | after EM | EM change | F1 change |", "|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(m for _, m in [*a, *b]):
        keys = [k for k in a.keys() & b.keys() if k[1] == mode and not a[k].get("error") and not b[k].get("error")]
        if not keys:
            continue
        keys.sort()
        cells = []
        for metric in ("em", "f1"):
            i = paired_bootstrap([a[k][metric] for k in keys], [b[k][metric] for k in keys], **BOOTSTRAP)
            cells.append(f"{100 * i.mean:+.1f} [{100 * i.low:+.1f}, {100 * i.high:+.1f}]")
        em = [f"{100 * sum(run[k]['em'] for k in keys) / len(keys):.1f}" for run in (a, b)]
        lines.append(f"| {mode} | {len(keys)} | {em[0]} | {em[1]} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3:
        sys.exit("usage: python -m assistant.evals.compare BEFORE/results.jsonl AFTER/results.jsonl")
    print(compare(Path(sys.argv[1]), Path(sys.argv[2])))
    print()
    print(paired_change(Path(sys.argv[1]), Path(sys.argv[2])))
