"""Shape a run's answers again with this checkout: what a change to answer shaping (trimming, number words, the
source's form) would have made of replies already generated, without running the model.

Each row's answer (the model's reply, labels removed) goes through what the loop does to a reply: `parse_answer`
(the short answer, trimmed in the route's language), then `in_source_form` (assistant/loop.py) over the passages the
model read (the row's `context`; the loop reads the shown sources whole, so a number or a name that stands only
outside the shown part can differ). The new short answer is scored against the row's gold answers and set beside
the row's own prediction: the rows that changed, then per file how many changed and the EM each way.

    python -m assistant.evals.reshape runs/x/results.jsonl [more/results.jsonl ...]

A change is measured honestly on rows it was not written from: say which rows those are.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from assistant.evals.scoring import score
from assistant.jsonl import rows as read_rows
from assistant.loop import in_source_form
from assistant.prompting import parse_answer

MODES = ("rag", "search", "agent")  # the modes whose answers the loop shapes from passages


def reshaped(row: dict[str, Any]) -> str:
    """The short answer this checkout makes of the row's reply."""
    lang = (row.get("route") or {}).get("language") or "en"
    texts = [c["text"] for c in row.get("context") or []]
    shown = {c["n"] for c in row.get("context") or []}
    short = parse_answer(row["answer"], shown, row["question"], lang).short_answer
    return in_source_form(short, texts, row["question"], lang)


def reshape(path: Path) -> tuple[list[str], str]:
    """The changed rows of one results.jsonl, one line each, and its summary row (markdown)."""
    rows = [r for r in read_rows(path) if r.get("mode") in MODES and not r.get("error") and r.get("answer")]
    lines, before, after, won, lost = [], 0.0, 0.0, 0, 0
    for row in rows:
        new = reshaped(row)
        em = score(new, row["answer"], row["gold"]).em
        before, after = before + row["em"], after + em
        if new != row["prediction"]:
            sign = "+" if em > row["em"] else "-" if em < row["em"] else "="
            won, lost = won + (em > row["em"]), lost + (em < row["em"])
            lines.append(f"{sign} {row['question'][:70]} | {row['prediction']!r} → {new!r} | gold {row['gold'][:3]}")
    n = len(rows) or 1
    summary = (
        f"| {path.parent.name} | {len(rows)} | {len(lines)} | {100 * before / n:.1f} | {100 * after / n:.1f} "
        f"| {won} | {lost} |"
    )
    return lines, summary


def main(paths: list[Path]) -> str:
    out, table = [], ["| run | rows | changed | EM before | EM after | won | lost |", "|---|---|---|---|---|---|---|"]
    for path in paths:
        lines, summary = reshape(path)
        out += [f"{path.parent.name}:", *(f"  {line}" for line in lines)]
        table.append(summary)
    return "\n".join([*out, "", *table])


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) < 2:
        sys.exit("usage: python -m assistant.evals.reshape RUN/results.jsonl [RUN/results.jsonl ...]")
    print(main([Path(p) for p in sys.argv[1:]]))
