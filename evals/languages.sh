#!/usr/bin/env bash
# The per-language answer-quality run of issue 15: rag with Qwen2.5-Coder-1.5B on the first 100 questions of XQuAD
# en de es ru zh ar (the same ids in each language) and of TyDi QA ko and en, each set over an index of its own
# language's passages (with vectors: the default retriever, hybrid), then one table of EM/F1 with TriviaQA's
# normalization and with MLQA's, answer and gold passage in context, and the share of answers in the question's
# language (evals/multilingual.py); then de, es and ru again with the English prompts, against their own.
#
#   bash evals/languages.sh [OUT] [DATA]     # defaults: runs/languages ../shared/data; resumable
#
# Each set's run is `assistant eval` into OUT/SET/ (results.jsonl, report.md); re-running resumes it. Questions
# are routed by detected language, as for a user (the route is in each row). Takes hours on 2 cores (1,100 answers).
set -uo pipefail
# `python3 -m assistant` runs the package of the folder it is started in (a pinned worktree), `assistant` the
# installed one: ASSISTANT chooses.
assistant=${ASSISTANT:-python3 -m assistant}
out=${1:-runs/languages}
data=${2:-../shared/data}
mkdir -p "$out"
table="$out/languages.md"
echo "| set | mode | n | EM | F1 | EM (MLQA) | F1 (MLQA) | answer in context | gold passage in context | in the question's language |" >"$table"
echo "|---|---|---|---|---|---|---|---|---|---|" >>"$table"
for set in xquad/en xquad/de xquad/es xquad/ru xquad/zh xquad/ar tydiqa/ko tydiqa/en; do
  name=${set/\//-}
  lang=${set#*/}
  db="$out/$name.db"
  if [ ! -f "$db" ]; then
    $assistant index build "$data/$set.passages.jsonl" --out "$db" || exit 1
  fi
  $assistant eval "$data/$set.questions.jsonl" --mode rag --limit 100 --model qwen2.5-coder-1.5b \
    --search local --index "$db" --out "$out/$name"
  python3 -m assistant.evals.multilingual "$out/$name/results.jsonl" --lang "$lang" \
    --questions "$data/$set.questions.jsonl" --index "$db" | tail -n +3 |
    sed "s#^|#| $set |#" >>"$table"
done
# The languages with prompts of their own (prompts/de.md, es, ru; fr has no dev data) asked again with the English
# prompts and the line "Answer in <language>, in the words of the sources.": whether their own prompts help. One
# look each (the prompt's effect on reading; cheaper): compare with the first looks of the runs above, which
# `python -m assistant.evals.confidence OUT/SET --mode rag --no-second-look --replay-out DIR` gives.
for set in xquad/de xquad/es xquad/ru; do
  name=${set/\//-}
  lang=${set#*/}
  ASSISTANT_ROUTES="{\"$lang\": {\"prompts\": \"en\"}}" $assistant eval "$data/$set.questions.jsonl" --mode rag \
    --limit 100 --model qwen2.5-coder-1.5b --search local --index "$out/$name.db" --no-second-look \
    --out "$out/$name-en-prompts"
  python3 -m assistant.evals.multilingual "$out/$name-en-prompts/results.jsonl" --lang "$lang" \
    --questions "$data/$set.questions.jsonl" --index "$out/$name.db" | tail -n +3 |
    sed "s#^|#| $set, English prompts |#" >>"$table"
done
cat "$table"
