"""TriviaQA in its own JSON format (Joshi et al., 2017): `{"Data": [{"QuestionId", "Question", "Answer"}]}`.

The gold answers are those the official scorer uses (mandarjoshi90/triviaqa,
evaluation/triviaqa_evaluation.py, `get_ground_truths`): `Answer.NormalizedAliases` plus the normalized
`Answer.HumanAnswers` when present. A record without them falls back to `Aliases` and `Value` (normalized the
same way when scored, so the result is the same). A verified-eval file keeps only the questions marked
`QuestionPartOfVerifiedEval`, as the official `read_triviaqa_data` (utils/dataset_utils.py) does. The unlabelled
test split has no `Answer`: its records are skipped and listed in `problems`.

Open-domain TriviaQA (`{question, answers[]}` JSONL, e.g. DPR's trivia dev) loads through evals/datasets.py.

    python -m assistant.evals.triviaqa tests/data/triviaqa-official-sample.json   # questions and aliases
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from assistant.errors import BadInput
from assistant.evals.datasets import QAExample, QATask
from assistant.evals.scoring import normalize_answer


def ground_truths(answer: dict[str, Any]) -> list[str]:
    """The aliases the official scorer compares against."""
    truths = list(answer.get("NormalizedAliases") or [])
    truths += [normalize_answer(a) for a in answer.get("HumanAnswers", [])]
    if not truths:
        truths = [a for a in [*(answer.get("Aliases") or []), answer.get("Value")] if a]
    return list(dict.fromkeys(truths))


class TriviaQA(QATask):
    """A TriviaQA file in the official format, scored exactly as its evaluation script scores it."""

    @classmethod
    def from_json(cls, data: Any, name: str = "triviaqa") -> TriviaQA:
        """Build the task from the parsed JSON document."""
        if not isinstance(data, dict) or not isinstance(data.get("Data"), list):
            raise BadInput(f"{name}: not TriviaQA's format (no 'Data' list) — or pass a .jsonl of questions")
        records = data["Data"]
        if data.get("VerifiedEval"):
            records = [r for r in records if isinstance(r, dict) and r.get("QuestionPartOfVerifiedEval")]
        examples: list[QAExample] = []
        problems: list[str] = []
        seen: set[str] = set()  # a repeated id would give two rows one key: the first is kept, as load_jsonl does
        for i, record in enumerate(records):
            where = f"record {i} ({record.get('QuestionId', 'no id')})" if isinstance(record, dict) else f"record {i}"
            if not isinstance(record, dict) or not str(record.get("Question") or "").strip():
                problems.append(f"{where}: no 'Question'")
                continue
            answer = record.get("Answer")
            truths = ground_truths(answer) if isinstance(answer, dict) else []
            if not truths:
                problems.append(f"{where}: no 'Answer' object (the test split is unlabelled; use a dev or train file)")
                continue
            qid = str(record.get("QuestionId") or f"record-{i}")
            if qid in seen:
                problems.append(f"{where}: duplicate id {qid!r}")
                continue
            seen.add(qid)
            examples.append(QAExample(qid, record["Question"], truths))
        return cls(name, examples, problems)


def load_triviaqa(path: Path) -> TriviaQA:
    """Read a TriviaQA JSON file (e.g. qa/wikipedia-dev.json or samples/triviaqa_sample.json)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not valid JSON at line {e.lineno} ({e.msg}) — is the file complete?") from None
    return TriviaQA.from_json(data, Path(path).stem)


if __name__ == "__main__":  # pragma: no cover
    for example in load_triviaqa(Path(sys.argv[1])):
        print(f"{example.id}\t{example.question}\t{' | '.join(example.answers)}")
