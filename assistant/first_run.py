"""What `ask` tells a new user about the model: once, which model answers and how to change it; and, whenever
the bundled fallback answers because no better preset is present, that it does and what to pull instead.

The "once" is a marker file in the data dir (`ASSISTANT_HOME` moves it): a fresh user dir hears it again.
"""

from __future__ import annotations

from pathlib import Path

from assistant.models import ModelSpec
from assistant.models.presets import RECOMMENDED, get_preset
from assistant.settings import data_dir

MARKER = "first-ask-done"


def marker() -> Path:
    """The file whose presence says the first-ask notice was shown."""
    return data_dir() / MARKER


def model_notices(spec: ModelSpec, seen: Path) -> list[str]:
    """The lines to show before an answer (none most of the time); writes the marker `seen` with the first-ask
    line."""
    name = spec.preset.name if spec.preset else spec.target
    lines = []
    if not seen.exists():
        how = "the best model present" if spec.by_default else "as configured"
        lines.append(
            f"answering with {name} ({how}); change it with --model NAME, ASSISTANT_MODEL or "
            "`assistant config set model NAME` — `assistant models` lists the presets. This is said once."
        )
        try:
            seen.parent.mkdir(parents=True, exist_ok=True)
            seen.touch()
        except OSError:  # a read-only home: the notice shows again next time, which is harmless
            pass
    if spec.by_default and spec.preset and spec.preset.fallback:
        better = get_preset(RECOMMENDED)
        size = f" ({better.size_mb / 1000:.1f} GB, SHA-256 checked)" if better else ""
        lines.append(
            f"{name} answers because no better model is present: it is small and often wrong — "
            f"`assistant models pull {RECOMMENDED}`{size} for better answers, or pass --model {name} to choose it"
        )
    return lines
