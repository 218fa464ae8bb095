"""Model backends behind one interface, and `load_model`, which picks one from the settings.

Resolution of `--model`: a preset name (see `assistant models`), a `.gguf` path (llama-cpp), a folder with a
`config.json` or an `org/name` hub id (transformers), or the served model's name with `--backend openai`.
No model given: the best preset present.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from assistant.errors import AssistantError
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
]


@dataclass
class ModelSpec:
    """What `--model` resolved to."""

    backend: str
    target: str  # a GGUF path, an HF id/folder, or the served model's name
    preset: Preset | None = None

    @property
    def tool_calling(self) -> bool:
        """Whether the model is trusted to drive the multi-step loop."""
        return self.preset.tool_calling if self.preset else True


def resolve_model(settings: Settings) -> ModelSpec:
    """Turn settings.model/backend into a concrete backend and target, with a one-line error if impossible."""
    name, backend = settings.model, settings.backend
    if backend == "openai":
        if not settings.base_url:
            raise AssistantError("--backend openai needs --base-url, e.g. http://127.0.0.1:8080/v1")
        return ModelSpec("openai", name or "default", get_preset(name) if name else None)
    preset = get_preset(name) if name else (None if backend == "transformers" else default_preset())
    if preset:
        if backend == "transformers" or (not preset.filename and preset.hf_id):
            if not preset.hf_id:
                raise AssistantError(f"{preset.name} has no transformers checkpoint; use --backend llama-cpp")
            return ModelSpec("transformers", preset.hf_id, preset)
        path = local_path(preset)
        if not path:
            raise AssistantError(f"model {preset.name} is not downloaded — run `assistant models pull {preset.name}`")
        return ModelSpec("llama-cpp", str(path), preset)
    if not name:
        raise AssistantError("--backend transformers needs --model (a Hugging Face id or folder)")
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" or backend == "llama-cpp":
        if not path.is_file():
            raise AssistantError(f"model file not found: {path} — run `assistant models` to list presets")
        return ModelSpec("llama-cpp", str(path))
    if path.is_dir() or backend == "transformers" or name.count("/") == 1:
        return ModelSpec("transformers", name)
    raise AssistantError(
        f"unknown model {name!r} — use a preset ({', '.join(PRESETS)}), a .gguf path or a Hugging Face id"
    )


def load_model(settings: Settings, spec: ModelSpec | None = None) -> ModelBackend:
    """Load the model the settings name."""
    spec = spec or resolve_model(settings)
    if spec.backend == "llama-cpp":
        from assistant.models.llama_cpp import LlamaCppBackend

        name = spec.preset.name if spec.preset else None
        return LlamaCppBackend(spec.target, n_ctx=settings.n_ctx, threads=settings.threads, name=name)
    if spec.backend == "transformers":
        from assistant.models.hf import TransformersBackend

        return TransformersBackend(spec.target, n_ctx=settings.n_ctx)
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
