"""Model backends behind one interface, and `load_model`, which picks one from the settings.

Resolution of `--model`: a preset name (see `assistant models`), a `.gguf` path (llama-cpp), a folder with a
`config.json` or an `org/name` hub id (transformers), or the served model's name with `--backend openai`.
No model given: the best preset present. Backends are looked up by name in a registry: the built-in three and
any that a package registers under the entry-point group `search_assistant.backends`, as
`NAME = "module:load"` where `load(settings, spec) -> ModelBackend` (`--backend NAME`; `--model` is passed on).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from assistant.errors import AssistantError, BadInput
from assistant.models.base import Completion, GenerationOptions, Message, ModelBackend, ToolCall, Usage, generate
from assistant.models.presets import PRESETS, Preset, default_preset, get_preset, local_path
from assistant.settings import Settings

__all__ = [
    "Completion",
    "GenerationOptions",
    "Message",
    "ModelBackend",
    "ToolCall",
    "Usage",
    "generate",
    "ModelSpec",
    "resolve_model",
    "load_model",
    "close_model",
    "backends",
]

ENTRY_POINTS = "search_assistant.backends"
Loader = Callable[[Settings, "ModelSpec"], ModelBackend]


@dataclass
class ModelSpec:
    """What `--model` resolved to."""

    backend: str
    target: str  # a GGUF path, an HF id/folder, or the served model's name
    preset: Preset | None = None
    by_default: bool = False  # no model was configured: the best preset present was taken

    @property
    def tool_calling(self) -> bool:
        """Whether the model is trusted to drive the multi-step loop: a preset that is; a model of unknown kind
        is not (`loop = "multi"` trusts any backend that supports tools)."""
        return self.preset.tool_calling if self.preset else False

    @property
    def answer_prompt(self) -> str:
        """The prompt that asks the model for its answer: its preset's, else the answer and its source by example."""
        return self.preset.answer_prompt if self.preset else "answer_example"

    @property
    def key(self) -> tuple[str, str]:
        """What identifies a loaded model."""
        return (self.backend, self.target)


def resolve_model(settings: Settings) -> ModelSpec:
    """Turn settings.model/backend into a concrete backend and target, with a one-line error if impossible."""
    name, backend = settings.model, settings.backend
    if backend and backend not in BUILT_IN:
        if backend not in backends():
            raise BadInput(f"unknown backend {backend!r} — one of: {', '.join(backends())}")
        return ModelSpec(backend, name or "default", get_preset(name) if name else None)
    if backend == "openai":
        if not settings.base_url:
            raise BadInput("--backend openai needs --base-url, e.g. http://127.0.0.1:8080/v1")
        return ModelSpec("openai", name or "default", get_preset(name) if name else None)
    preset = get_preset(name) if name else (None if backend == "transformers" else default_preset())
    if preset:
        if backend == "transformers" or (not preset.filename and preset.hf_id):
            if not preset.hf_id:
                raise BadInput(f"{preset.name} has no transformers checkpoint; use --backend llama-cpp")
            return ModelSpec("transformers", preset.hf_id, preset)
        path = local_path(preset)
        if not path:
            raise BadInput(f"model {preset.name} is not downloaded — run `assistant models pull {preset.name}`")
        return ModelSpec("llama-cpp", str(path), preset, by_default=not name)
    if not name:
        raise BadInput("--backend transformers needs --model (a Hugging Face id or folder)")
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" or backend == "llama-cpp":
        if not path.is_file():
            raise BadInput(f"model file not found: {path} — run `assistant models` to list presets")
        return ModelSpec("llama-cpp", str(path))
    if path.is_dir() or backend == "transformers" or name.count("/") == 1:
        return ModelSpec("transformers", name)
    raise BadInput(f"unknown model {name!r} — use a preset ({', '.join(PRESETS)}), a .gguf path or a Hugging Face id")


def load_model(settings: Settings, spec: ModelSpec | None = None) -> ModelBackend:
    """Load the model the settings name, with the backend the spec names."""
    spec = spec or resolve_model(settings)
    load = backends().get(spec.backend)
    if load is None:
        raise BadInput(f"unknown backend {spec.backend!r} — one of: {', '.join(backends())}")
    return load(settings, spec)


def close_model(model: ModelBackend) -> None:
    """Release a model's memory, threads and connections, where its backend holds any."""
    close = getattr(model, "close", None)  # optional: a test double or a plugin may hold nothing
    if callable(close):
        close()


def _llama_cpp(settings: Settings, spec: ModelSpec) -> ModelBackend:
    from assistant.models.llama_cpp import LlamaCppBackend

    name = spec.preset.name if spec.preset else None
    return LlamaCppBackend(spec.target, n_ctx=settings.n_ctx, threads=settings.threads, name=name)


def _transformers(settings: Settings, spec: ModelSpec) -> ModelBackend:
    from assistant.models.hf import TransformersBackend

    return TransformersBackend(spec.target, n_ctx=settings.n_ctx)


def _openai(settings: Settings, spec: ModelSpec) -> ModelBackend:
    from assistant.models.openai_compat import OpenAIBackend

    # A preset's GGUF on this machine holds the served model's vocabulary: tokens are counted without a request.
    vocab = local_path(spec.preset) if spec.preset else None
    return OpenAIBackend(
        settings.base_url or "",
        model=spec.target,
        api_key=settings.api_key,
        context_length=settings.n_ctx,
        tokenizer=vocab,
    )


BUILT_IN: dict[str, Loader] = {"llama-cpp": _llama_cpp, "transformers": _transformers, "openai": _openai}


def backends() -> dict[str, Loader]:
    """Every backend by name: the built-in ones, then those that installed packages register."""
    found: dict[str, Loader] = dict(BUILT_IN)
    for entry in entry_points(group=ENTRY_POINTS):
        found.setdefault(entry.name, _lazy(entry.name, entry.load))
    return found


def _lazy(name: str, load_entry: Callable[[], Loader]) -> Loader:
    """A plugin's loader, imported only when its backend is used; a broken plugin is a one-line error."""

    def load(settings: Settings, spec: ModelSpec) -> ModelBackend:
        try:
            loader = load_entry()
        except Exception as e:  # an ImportError, or anything the plugin's module raises on import
            raise AssistantError(f"backend {name!r} could not be loaded: {type(e).__name__}: {e}") from None
        return loader(settings, spec)

    return load
