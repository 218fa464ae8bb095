"""The `extract` and `extract-eval` commands: text in, JSON that validates against a schema out.

    assistant extract --fields "name:str, born:int, city:str?" "Ada Lovelace (born 1815) was a mathematician."
    assistant extract --schema person.json --many --file page.txt
    cat notes.txt | assistant extract --fields "name:str, role:{actor|director}" --many -
    assistant extract --schema person.json --jsonl texts.jsonl > people.jsonl
    assistant extract-eval --model smollm2-135m            # the labelled set, with and without constraints

A failed extraction exits 1 (a runtime failure), naming the failing field, with the model's raw output on stderr;
bad input (an invalid schema, an empty text) exits 2, as for every command (assistant/errors.py). `--jsonl` reads
one text a line (plain text, or an object with a "text" key) and writes one row a line, `{"line": n, "data": ...}`
or `{"line": n, "error": ..., "raw": ...}`: nothing is lost, and any row with an error makes the exit code 1. The
commands register themselves on the app.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from assistant.cli_app import MODEL_FLAGS, Output, app, err, fails_cleanly, with_output, with_settings
from assistant.errors import AssistantError, BadInput, Exit
from assistant.jsonl import lines
from assistant.settings import Settings

ConstrainOpt = Annotated[
    bool, typer.Option("--no-constrain", help="Decode without a grammar/response_format (still validated).")
]
MaxTokensOpt = Annotated[
    int | None, typer.Option("--max-tokens", min=16, help="Most tokens per answer (default: from the text's length).")
]


def _text(text: str | None, file: Path | None) -> str:
    if text is not None and file is not None:
        raise BadInput("pass the text or --file, not both")
    if file is not None:
        try:
            return file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise BadInput(f"cannot read {file}: {_why(e)}") from None
    if text == "-":
        return sys.stdin.read()
    if text is None:
        raise BadInput("no text — pass TEXT, - to read stdin, --file F, or --jsonl F")
    return text


def _line_text(line: str) -> str:
    """A JSONL line's text: the "text" of an object, else the line itself."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return line
    return str(record.get("text") or "") if isinstance(record, dict) else line


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


@app.command("extract")
@fails_cleanly
@with_settings(only=MODEL_FLAGS)
@with_output
def extract_cmd(
    settings: Settings,
    output: Output,
    text: Annotated[str | None, typer.Argument(help="The text; - reads stdin.")] = None,
    schema: Annotated[Path | None, typer.Option("--schema", help="A JSON Schema file (draft 2020-12).")] = None,
    fields: Annotated[
        str | None,
        typer.Option("--fields", help='Shorthand: "name:str, age:int, city:str?, role:{a|b}, tags:list\\[str]".'),
    ] = None,
    many: Annotated[bool, typer.Option("--many", help="A list of such objects.")] = False,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Read the text from a file.")] = None,
    jsonl: Annotated[
        Path | None, typer.Option("--jsonl", help="Extract from each line of a file: one output row per line.")
    ] = None,
    no_constrain: ConstrainOpt = False,
    max_tokens: MaxTokensOpt = None,
) -> None:
    """Print JSON extracted from a text that validates against a schema (exit 1 if the model's output does not)."""
    from assistant.extract import ExtractionError, Target, load_schema, run_extraction
    from assistant.models import load_model

    if (schema is None) == (fields is None):
        raise BadInput('pass one of --schema FILE.json or --fields "name:str, age:int"')
    checked, _ = load_schema(schema if schema is not None else str(fields))
    target = Target(checked, many)
    texts = None if jsonl is None else _jsonl_lines(jsonl, text, file)
    source = _text(text, file) if texts is None else ""
    if texts is None and not source.strip():
        raise BadInput("the text is empty — pass the text to extract from (an argument, --file or stdin)")
    llm = load_model(settings)
    options = {"constrain": not no_constrain, "max_tokens": max_tokens}
    if texts is None:
        try:
            result = run_extraction(source, target, llm, **options)  # type: ignore[arg-type]
        except ExtractionError as e:
            err.print(
                f"[red]error:[/red] {escape(str(e))}; the raw output follows on stderr", highlight=False, soft_wrap=True
            )
            typer.echo(e.raw, err=True)
            raise typer.Exit(Exit.FAILED) from None
        for note in [] if output.quiet else result.notes:
            err.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False, soft_wrap=True)
        typer.echo(_dump(result.data))
        return
    failed = 0
    for n, line in enumerate(texts, 1):
        row: dict[str, Any] = {"line": n}
        try:
            row["data"] = run_extraction(_line_text(line), target, llm, **options).data  # type: ignore[arg-type]
        except ExtractionError as e:
            row |= {"error": str(e), "raw": e.raw}
        except AssistantError as e:  # an empty line, a prompt too long for the window: this row only
            row |= {"error": str(e), "raw": ""}
        failed += "error" in row
        typer.echo(_dump(row))
        sys.stdout.flush()
    if not output.quiet:
        err.print(f"{len(texts)} lines, {failed} errors (rows with an 'error' key)", highlight=False)
    if failed:
        raise typer.Exit(Exit.FAILED)


def _jsonl_lines(path: Path, text: str | None, file: Path | None) -> list[str]:
    if text is not None or file is not None:
        raise BadInput("--jsonl reads its texts from the file: pass no TEXT and no --file")
    try:
        return lines(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise BadInput(f"cannot read {path}: {_why(e)}") from None


def _why(e: OSError | UnicodeDecodeError) -> str:
    if isinstance(e, UnicodeDecodeError):
        return f"not UTF-8 text (byte {e.start + 1})"
    return str(e.strerror or e)


@app.command("extract-eval")
@fails_cleanly
@with_settings(only=MODEL_FLAGS)
def extract_eval(
    settings: Settings,
    mode: Annotated[str, typer.Option("--mode", help="constrained | unconstrained | both.")] = "both",
    limit: Annotated[int | None, typer.Option("--limit", "-n", min=1, help="Only the first N cases.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Cases (default: the bundled labelled set).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write one JSON row per case and mode here.")] = None,
) -> None:
    """Score extraction on the labelled set: validity, field precision/recall, seconds per case (markdown)."""
    from assistant.evals.extraction import load_cases, markdown, run_eval
    from assistant.models import load_model

    modes = {"both": [True, False], "constrained": [True], "unconstrained": [False]}.get(mode)
    if modes is None:
        raise BadInput(f"unknown --mode {mode!r} — use constrained, unconstrained or both")
    task = load_cases(data).select(limit)
    for problem in task.problems:
        err.print(f"[yellow]warning:[/yellow] {escape(problem)}; skipped", highlight=False, soft_wrap=True)
    if not len(task):
        raise BadInput(f"no usable cases in {data or 'the bundled set'}")
    llm = load_model(settings)
    summaries = []
    for constrain in modes:
        rows = run_eval(
            task,
            llm,
            constrain,
            progress=lambda r: err.print(_progress(r), highlight=False, soft_wrap=True, markup=False),
        )
        summaries.append(rows.summary(llm.name))
        if out is not None:
            rows.write(out, append=len(summaries) > 1)
    typer.echo(markdown(summaries), nl=False)


def _progress(row: Any) -> str:
    verdict = "valid" if row.valid else f"INVALID ({row.error})"
    return f"{row.mode:>13} {row.id}: {verdict}, {row.matched}/{row.predicted} right of {row.gold}, {row.seconds:.1f}s"
