"""A new user's first run: which model answers (said once), the bundled fallback (said each time), and `models pull`
with a progress bar of bytes and time left, through the real CLI.

The presets are a fake `tiny` preset, a small file with a known SHA-256 served by a hub on 127.0.0.1, ahead of
the real bundled SmolLM2; the scripted fake model answers in place of whichever the CLI picks.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from assistant.cli import DownloadBar, app
from assistant.first_run import MARKER
from assistant.models import ModelSpec
from assistant.models import presets as P
from tests.conftest import FakeModel
from tests.test_models import PAYLOAD, make_chunks

BLOB = b"GGUF tiny test model " * 20_000  # 420 kB: several reads of the stream
runner = CliRunner()


class Hub(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", str(len(BLOB)))
        self.end_headers()
        for i in range(0, len(BLOB), 65536):
            self.wfile.write(BLOB[i : i + 65536])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def presets(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, P.Preset]]:
    """`tiny` (on the hub of 127.0.0.1, not yet pulled) ahead of the bundled SmolLM2."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(P, "HUB", f"http://127.0.0.1:{server.server_address[1]}")
    tiny = P.Preset("tiny", "a test file", "MIT", 1, "tiny.gguf", hashlib.sha256(BLOB).hexdigest(), "org/tiny")
    table = {"tiny": tiny, "smollm2-135m": P.PRESETS["smollm2-135m"]}
    monkeypatch.setattr(P, "PRESETS", table)
    yield table
    server.shutdown()
    server.server_close()


@pytest.fixture
def loaded(fake_model: FakeModel, monkeypatch: pytest.MonkeyPatch) -> list[ModelSpec]:
    """The specs the CLI loads; the fake model answers for each."""
    specs: list[ModelSpec] = []

    def load(settings: object, spec: ModelSpec) -> FakeModel:
        specs.append(spec)
        return fake_model.enqueue("Answer: Bogotá")

    monkeypatch.setattr("assistant.runner.load_model", load)
    return specs


def ask(*args: str) -> list[str]:
    return ["ask", "What is the capital of Colombia?", "--search", "none", *args]


def test_the_default_is_the_best_preset_present_and_the_fallback_says_so(presets, loaded, isolated: Path):
    first = runner.invoke(app, ask())
    assert first.exit_code == 3, first.output  # closed-book: not from sources
    said = " ".join(first.stderr.split())
    assert "answering with smollm2-135m (the best model present)" in said and "--model NAME" in said, said
    assert "smollm2-135m answers because no better model is present" in said, said
    assert (isolated / "data" / MARKER).is_file()

    again = runner.invoke(app, ask())
    said = " ".join(again.stderr.split())
    assert "answering with" not in said, "the first-ask notice is said once"
    assert "no better model is present" in said, "the fallback is said every time"

    pulled = runner.invoke(app, ["models", "pull", "tiny"])
    assert pulled.exit_code == 0, pulled.output
    path = P.models_dir() / "tiny.gguf"
    assert pulled.stdout == f"{path}\n" and hashlib.sha256(path.read_bytes()).hexdigest() == presets["tiny"].sha256

    better = runner.invoke(app, ask())
    assert better.exit_code == 3 and "no better model" not in better.stderr, better.output
    assert [s.preset.name if s.preset else None for s in loaded] == ["smollm2-135m", "smollm2-135m", "tiny"]
    assert loaded[-1].target == str(path) and loaded[-1].by_default


def test_a_model_chosen_on_purpose_is_no_fallback(presets, loaded):
    result = runner.invoke(app, ask("--model", "smollm2-135m"))
    said = " ".join(result.stderr.split())
    assert "answering with smollm2-135m (as configured)" in said and "no better model" not in said, said


def test_quiet_says_nothing_and_leaves_the_first_ask_notice_for_later(presets, loaded, isolated: Path):
    result = runner.invoke(app, ask("-q"))
    assert result.stdout == "Bogotá\n" and result.stderr == "", result.output
    assert not (isolated / "data" / MARKER).exists()


def test_a_pull_shows_bytes_and_time_left_on_a_terminal(presets):
    screen = io.StringIO()
    bar = DownloadBar(Console(file=screen, force_terminal=True, color_system=None, width=120))
    try:
        P.pull(presets["tiny"], bar)
    finally:
        bar.stop()
    last = screen.getvalue().rsplit("\r", 1)[-1]
    assert re.search(r"tiny from the hub .*━+.* 420\.0/420\.0 kB .* eta 0:00:00", last), repr(last)
    assert "downloading http://127.0.0.1:" in screen.getvalue()


def test_a_chunked_pull_is_one_bar_not_a_line_per_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip reads only the local folder: no network
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    chunks = make_chunks(folder)
    digest = hashlib.sha256(b"".join(PAYLOAD)).hexdigest()
    preset = P.Preset("chunked", "t", "MIT", 1, filename="c.gguf", sha256=digest, chunks=chunks)  # 1 MB, it says
    screen = io.StringIO()
    bar = DownloadBar(Console(file=screen, force_terminal=True, color_system=None, width=120))
    try:
        P.pull(preset, bar, hub=False)
    finally:
        bar.stop()
    shown = screen.getvalue()
    assert "chunk 1/3" not in shown and shown.count("chunked from 3 PyPI chunks") >= 1, shown
    size = len(b"".join(PAYLOAD)) / 1000
    last = shown.rsplit("\r", 1)[-1]
    assert f"{size:.1f}/{size:.1f} kB" in last, f"the bar ends full at the bytes written, not at 1 MB: {last!r}"


def test_piped_a_pull_prints_its_path_and_no_bar(presets):
    result = runner.invoke(app, ["models", "pull", "tiny"])
    assert result.exit_code == 0, result.output
    assert "━" not in result.stderr and "downloading http://127.0.0.1:" in result.stderr, result.stderr
    quiet = runner.invoke(app, ["models", "pull", "tiny", "-q"])  # already present: nothing to say
    assert quiet.exit_code == 0 and quiet.stderr == "" and quiet.stdout == result.stdout, quiet.output
