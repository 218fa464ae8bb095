"""Question-answering eval tasks: the shared task class, open-domain JSONL, and format auto-detection.

A task is a list of `QAExample`s with `__len__`, `__getitem__` and `evaluate(example, short, full)`, scored
with TriviaQA's official normalization (evals/scoring.py). Formats `load_dataset` recognises:

- TriviaQA's own JSON (`{"Data": [{"QuestionId", "Question", "Answer": {...}}]}`): evals/triviaqa.py.
- Open-domain JSONL, one `{"id"?, "question", "answers": [...]}` a line (DPR / Anserini / this repo's data).
- FlashRAG JSONL, the same with `golden_answers` instead of `answers`.
- Hugging Face `trivia_qa` JSONL, with `answer: {value, aliases, normalized_aliases}`.

A bad JSONL line is skipped and listed in `task.problems` with its line number; the rest loads.

    python -m assistant.evals.datasets /work/shared/data/triviaqa/wiki-dev300.jsonl   # count and first record
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from assistant.errors import BadInput
from assistant.evals.scoring import Scores, score


@dataclass
class QAExample:
    """One question with every answer that counts as correct."""

    id: str
    question: str
    answers: list[str]


@dataclass
class QATask:
    """A list of questions scored by max over their gold aliases."""

    name: str
    examples: list[QAExample]
    problems: list[str] = field(default_factory=list)  # "line N: why" for records that were skipped

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> QAExample:
        return self.examples[i]

    def evaluate(self, example: QAExample, short_answer: str, full_answer: str = "") -> Scores:
        """EM/F1 of the short answer, match over the full answer (the short one if none is given)."""
        return score(short_answer, full_answer or short_answer, example.answers)

    def select(self, limit: int | None = None, seed: int | None = None) -> QATask:
        """The first `limit` questions, or with `seed` a random sample of `limit` (the same for the same seed)."""
        examples = list(self.examples)
        if seed is not None:
            random.Random(seed).shuffle(examples)
        if limit is not None:
            examples = examples[:limit]
        return replace(self, examples=examples)


def _answers(record: dict[str, Any]) -> list[str]:
    """Gold aliases from whichever field the format uses."""
    for key in ("answers", "golden_answers"):
        value = record.get(key)
        if isinstance(value, str):
            return [value]
        if isinstance(value, list):
            return [str(a) for a in value if str(a).strip()]
    answer = record.get("answer")
    if isinstance(answer, dict):  # Hugging Face trivia_qa
        aliases = answer.get("normalized_aliases") or answer.get("aliases") or []
        return [str(a) for a in [*aliases, answer.get("value")] if a]
    if isinstance(answer, str):
        return [answer]
    return []


def load_jsonl(path: Path) -> QATask:
    """Open-domain / FlashRAG / HF JSONL: one question a line; bad lines are skipped and listed."""
    examples: list[QAExample] = []
    problems: list[str] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8", errors="replace") as f:  # a bad byte is read as U+FFFD, not a crash
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"line {n}: not valid JSON ({e.msg})")
                continue
            if not isinstance(record, dict) or not str(record.get("question") or "").strip():
                problems.append(f"line {n}: no 'question' field")
                continue
            answers = _answers(record)
            if not answers:
                problems.append(f"line {n}: no gold answers ('answers' or 'golden_answers')")
                continue
            qid = str(record.get("id") or record.get("question_id") or f"line-{n}")
            if qid in seen:
                problems.append(f"line {n}: duplicate id {qid!r}")
                continue
            seen.add(qid)
            examples.append(QAExample(qid, str(record["question"]), answers))
    return QATask(path.stem, examples, problems)


def _first_line_is_triviaqa(path: Path) -> bool:
    """TriviaQA's format is one JSON document with a "Data" list, pretty-printed or on one line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        first = next((line for line in f if line.strip()), "")
    try:
        record = json.loads(first)
    except json.JSONDecodeError:  # a document spread over lines, or a JSONL file whose first line is bad
        return first.strip() == "{" or first.lstrip().startswith('{"Data"')
    return isinstance(record, dict) and "Data" in record


def load_dataset(path: Path | str) -> QATask:
    """Load a dataset file, detecting its format (TriviaQA JSON, or JSONL with answers/golden_answers)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"dataset not found: {path} — pass a TriviaQA .json or a .jsonl of questions")
    if _first_line_is_triviaqa(path):
        from assistant.evals.triviaqa import load_triviaqa

        task = load_triviaqa(path)
    else:
        task = load_jsonl(path)
    if not task.examples:
        why = "; ".join(task.problems[:3]) or "the file is empty"
        raise BadInput(f"no questions with answers in {path} ({why}) — see `assistant eval --help` for formats")
    return task


if __name__ == "__main__":  # pragma: no cover
    task = load_dataset(sys.argv[1])
    print(f"{task.name}: {len(task)} questions, {len(task.problems)} skipped")
    print(task[0])
