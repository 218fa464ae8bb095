"""Registries and the module shape: a third-party package adds a model backend and a search engine through entry
points (installed here as a temporary package on PYTHONPATH), and every CLI module imports on its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = '''
from assistant.models.base import Completion, Usage
from assistant.search.base import SearchResult


class Echo:
    """A model that answers from the first source it is shown."""

    name = "echo"
    context_length = 2048
    supports_tools = False
    supports_schema = False
    grammar_from_schema = False
    counts_tokens_locally = True

    def count_tokens(self, text):
        return len(text.split())

    def stream(self, messages, options):
        prompt = messages[-1].content
        text = "Rembrandt [1]" if "[1] The Night Watch" in prompt else "unknown"
        yield text
        yield Completion(text, usage=Usage(self.count_tokens(prompt), 2))


def load(settings, spec):
    return Echo()


class Listed:
    name = "listed"

    def search(self, query, max_results=5):
        return [SearchResult("nw", "The Night Watch", "", "", "The Night Watch is a painting by Rembrandt.")]


def make(settings):
    return Listed()
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A folder that holds an installed package: its module and its dist-info with entry points."""
    site = tmp_path / "site"
    dist = site / "echo_plugin-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "echo_plugin.py").write_text(PLUGIN, encoding="utf-8")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 0.1\n", encoding="utf-8")
    entry_points = (
        "[search_assistant.backends]\necho = echo_plugin:load\n\n[search_assistant.search]\nlisted = echo_plugin:make\n"
    )
    (dist / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))


def test_a_third_party_backend_and_search_engine_answer_through_entry_points(plugin_path: str):
    question = "Who painted The Night Watch?"
    command = [sys.executable, "-m", "assistant", "ask", question, "--backend", "echo", "--search", "listed", "--json"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": plugin_path}
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["model"], data["search"], data["short_answer"]) == ("echo", "listed", "Rembrandt")
    assert [s["id"] for s in data["sources"]] == ["nw"]


def test_an_unknown_backend_is_a_one_line_error_naming_the_known_ones(plugin_path: str):
    command = [sys.executable, "-m", "assistant", "ask", "q", "--backend", "nope", "--search", "none"]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": plugin_path}
    )
    assert result.returncode == 2, result.stderr
    assert "unknown backend 'nope' — one of: llama-cpp, transformers, openai, echo" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", ["cli", "cli_app", "cli_runs", "cli_chat", "cli_extract"])
def test_each_cli_module_imports_on_a_fresh_interpreter(module: str):
    result = subprocess.run([sys.executable, "-c", f"import assistant.{module}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
