"""JSON extraction on a labelled set: validity and field-level precision/recall (assistant/extract.py).

The bundled set (evals/data/extraction.jsonl; sources and licences in evals/data/README.md) holds 30 cases on
28 real passages, 23 HotpotQA Wikipedia paragraphs and 5 XQuAD paragraphs in Russian, German, Spanish, Chinese
and Greek, each with a JSON Schema (or `--fields` shorthand), `many` for lists, and the expected JSON written
by hand. A case is one line: `{"id", "source", "lang", "text", "schema"|"fields", "many"?, "expected"}`.

Scoring, per case and then summed over the set (micro-averaged):
- valid: the output validates against the schema after at most one retry. An invalid case predicts nothing.
- leaves: every scalar in the JSON as (path, value), where the path joins object keys with "." and writes
  every array index as "[]", so lists compare as multisets (order-free) and so do lists of objects, field by
  field. null and "" are no value. Values are compared after light normalization: Unicode NFC, case folded,
  white space collapsed, typographic quotes made plain, a trailing period dropped; numbers by value (40 == 40.0).
- precision = matched leaves / predicted leaves, recall = matched leaves / expected leaves (multiset overlap).

    assistant extract-eval --model smollm2-135m                      # both modes, a markdown table
    python -m assistant.evals.extraction --model qwen2.5-coder-1.5b --mode constrained --out runs/x.jsonl
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.errors import AssistantError, BadInput
from assistant.extract import ExtractionError, Target, check_schema, find_problem, parse_fields, run_extraction
from assistant.jsonl import lines as jsonl_lines
from assistant.models.base import ModelBackend

DATA = Path(__file__).parent / "data" / "extraction.jsonl"
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"'})


@dataclass
class ExtractionCase:
    """A text, what to extract from it, and the expected JSON."""

    id: str
    text: str
    schema: dict[str, Any]
    expected: Any
    many: bool = False
    source: str = ""
    lang: str = "en"


@dataclass
class CaseResult:
    """How one case went in one mode."""

    id: str
    mode: str
    valid: bool
    first_try: bool
    matched: int
    predicted: int
    gold: int
    seconds: float
    error: str | None = None
    data: Any = None
    raw: str = ""


def normalize(value: Any) -> str | None:
    """A leaf value as compared: None for no value."""
    if value is None or isinstance(value, (dict, list)):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    text = " ".join(unicodedata.normalize("NFC", str(value)).translate(_QUOTES).casefold().split())
    return text.removesuffix(".").strip() or None


def leaves(value: Any, path: str = "") -> Counter[tuple[str, str]]:
    """The (path, normalized value) multiset of a JSON value; array indexes become "[]"."""
    out: Counter[tuple[str, str]] = Counter()
    if isinstance(value, dict):
        for key, item in value.items():
            out += leaves(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for item in value:
            out += leaves(item, f"{path}[]")
    elif (norm := normalize(value)) is not None:
        out[(path, norm)] += 1
    return out


@dataclass
class ExtractionTask:
    """The labelled cases; `problems` lists lines that were skipped (bad JSON, or gold that fails its schema)."""

    name: str
    cases: list[ExtractionCase]
    problems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, i: int) -> ExtractionCase:
        return self.cases[i]

    def evaluate(self, case: ExtractionCase, data: Any) -> tuple[int, int, int]:
        """(matched, predicted, expected) leaves of `data` (None: an invalid output, which predicts nothing)."""
        gold, pred = leaves(case.expected), leaves(data)
        return sum((gold & pred).values()), sum(pred.values()), sum(gold.values())

    def select(self, limit: int | None = None) -> ExtractionTask:
        """The first `limit` cases."""
        return replace(self, cases=self.cases[:limit])


def load_cases(path: Path | None = None) -> ExtractionTask:
    """Read a cases file (default: the bundled set); each bad line is skipped and named in `problems`."""
    path = path or DATA
    try:
        lines = jsonl_lines(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise BadInput(f"cannot read {path}: {e.strerror or e}") from None
    cases, problems = [], []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            schema = record["schema"] if "schema" in record else parse_fields(record["fields"])
            check_schema(schema)
            case = ExtractionCase(
                record["id"], record["text"], schema, record["expected"], bool(record.get("many")),
                record.get("source", ""), record.get("lang", "en"),
            )  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, AssistantError) as e:
            problems.append(f"line {n}: {e}")
            continue
        if bad := find_problem(Target(case.schema, case.many), case.expected):
            problems.append(f"line {n} ({case.id}): the expected JSON fails its schema at `{bad[0]}`: {bad[1]}")
            continue
        cases.append(case)
    return ExtractionTask(path.stem, cases, problems)


@dataclass
class EvalRows:
    """The results of one mode over a task."""

    mode: str
    rows: list[CaseResult]

    def summary(self, model: str) -> dict[str, Any]:
        """Validity, first-try validity, micro precision/recall/F1 and seconds per case."""
        n = len(self.rows) or 1
        matched = sum(r.matched for r in self.rows)
        p = matched / max(1, sum(r.predicted for r in self.rows))
        r = matched / max(1, sum(r.gold for r in self.rows))
        return {
            "model": model,
            "decoding": self.mode,
            "cases": len(self.rows),
            "valid": sum(r.valid for r in self.rows) / n,
            "first_try": sum(r.first_try for r in self.rows) / n,
            "precision": p,
            "recall": r,
            "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "seconds": sum(r.seconds for r in self.rows) / n,
        }

    def write(self, path: Path, append: bool = False) -> None:
        """One JSON line per case."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            for row in self.rows:
                f.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")


def run_eval(
    task: ExtractionTask, model: ModelBackend, constrain: bool, progress: Callable[[CaseResult], None] | None = None
) -> EvalRows:
    """Extract every case with `model`, constrained or not, and score it."""
    mode = "constrained" if constrain else "unconstrained"
    rows = []
    for case in task:
        start = time.perf_counter()
        data, raw, error, first = None, "", None, False
        try:
            result = run_extraction(case.text, Target(case.schema, case.many), model, constrain=constrain)
            data, raw, first = result.data, result.raw, result.attempts == 1
        except ExtractionError as e:
            raw, error = e.raw, str(e)
        matched, predicted, gold = task.evaluate(case, data)
        seconds = time.perf_counter() - start
        rows.append(
            CaseResult(case.id, mode, error is None, first, matched, predicted, gold, seconds, error, data, raw)
        )
        if progress:
            progress(rows[-1])
    return EvalRows(mode, rows)


def markdown(summaries: list[dict[str, Any]]) -> str:
    """A markdown table, one row per model and decoding mode."""
    head = "| model | decoding | cases | valid | valid 1st try | precision | recall | F1 | s/case |\n"
    head += "|---|---|---|---|---|---|---|---|---|\n"
    return head + "".join(
        f"| {s['model']} | {s['decoding']} | {s['cases']} | {s['valid']:.0%} | {s['first_try']:.0%} | "
        f"{s['precision']:.2f} | {s['recall']:.2f} | {s['f1']:.2f} | {s['seconds']:.1f} |\n"
        for s in summaries
    )


if __name__ == "__main__":  # pragma: no cover
    import typer

    from assistant.cli_extract import extract_eval

    typer.run(extract_eval)
