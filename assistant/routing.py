"""Per-language routing: each question's language is detected and picks a route (model, prompts, search region,
answer language); an English question takes the default route and costs only the detection.

Detection is py3langid (langid.py's model, 4.5 MB, BSD-3) restricted to the routed languages. A language
detected below `lang_threshold` (very short or mixed queries: "Paris?", "Who wrote Les Misérables?") takes the
default route, and the route says why; `--lang xx` (the `lang` setting) skips detection. Routes are built in for
the languages of `LANGUAGES` and overridden field by field by `[routes.xx]` in config.toml. A route that names
no model, or whose model cannot be resolved, falls back to `multilingual_model` (auto: the best multilingual
preset present, Qwen2.5; SmolLM2 is English-only), else to the default model with the route's prompts and
region; the fallback is recorded in the answer's `route`. Route models other than the default one are loaded
on first use and the least recently used is released past `route_memory_mb` (sizes from the GGUF files).

    python -m assistant.routing "Wie viele Punkte gab die Verteidigung der Panthers ab?"   # the route taken
    python -m assistant.routing --measure ../shared/data/xquad    # detection accuracy and time per language
"""

from __future__ import annotations

import contextlib
import copy
import functools
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.analysis import identifier
from assistant.errors import AssistantError, BadInput
from assistant.jsonl import rows as jsonl_rows
from assistant.languages import LANGUAGES
from assistant.models import ModelBackend, ModelSpec, close_model, load_model, resolve_model
from assistant.prompting import ENGLISH, Prompts, language_prompts
from assistant.settings import RouteConfig, Settings

DEFAULT_LANG = "en"
# Built-in routes: the languages of assistant/languages.py, each with its search region and English name there.
# Presets trained on many languages, best first (Qwen2.5: 29+ languages); Phi-3-mini and SmolLM2 are mainly English.
MULTILINGUAL = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b")
# Built-in routes ask with the English prompts and one line asking for the answer in the question's language;
# a route's `prompts = "de"` (config.toml) takes prompts/de.md instead. Chosen by measurement: German, Spanish and
# Russian asked with their own prompts and with these, Qwen2.5-Coder-1.5B on XQuAD (docs/results.md, "Non-English
# answers"); the language's own prompts were no better in any of them.


@dataclass
class Detection:
    """The most likely routed language of a text (None: no letters) and its probability among them."""

    lang: str | None
    confidence: float
    seconds: float = 0.0
    forced: bool = False  # given by --lang, not detected


@functools.cache
def _identifier(languages: tuple[str, ...]) -> Any:
    """py3langid restricted to `languages`; the model (about 1 s to read) is loaded once per process."""
    ident = copy.copy(_full_identifier())
    ident.set_languages(list(languages))
    return ident


_LOADING = threading.Lock()


def _full_identifier() -> Any:
    with _LOADING:  # a second caller waits for the first load instead of starting its own
        try:
            return identifier()
        except AssistantError as e:
            raise AssistantError(f"{e}, or pass --lang en") from None


def preload() -> None:
    """Read the detection model (about 1 s) in a thread, while the default model loads."""
    with contextlib.suppress(AssistantError):
        _full_identifier()


def detectable(codes: list[str]) -> tuple[str, ...]:
    """The codes py3langid knows, sorted."""
    known = set(_full_identifier().labels)
    return tuple(sorted(c for c in set(codes) if c in known))


def detect(text: str, languages: tuple[str, ...]) -> Detection:
    """The language of `text` among `languages`."""
    start = time.perf_counter()
    if not any(c.isalpha() for c in text):
        return Detection(None, 0.0, time.perf_counter() - start)
    lang, confidence = _identifier(languages).classify(text)
    return Detection(lang, float(confidence), time.perf_counter() - start)


@dataclass(frozen=True)
class Route:
    """Where a question goes: the model (`spec` None: the default model), the prompts, the search region and the
    language the answer is asked in; `fallback` says why the route is not as asked."""

    language: str
    model: str
    prompts: Prompts  # prompts/*.md (lang "en") or prompts/<lang>.md, with the answer-language line
    region: str
    answer: str  # the language the answer is asked in; "" asks nothing
    fallback: str | None = None
    spec: ModelSpec | None = None

    def record(self, detect_ms: float) -> dict[str, Any]:
        """What answers record as `route`."""
        lang = self.prompts.lang
        prompt = "prompts/*.md" if lang == DEFAULT_LANG else f"prompts/{lang}.md"
        return {
            "language": self.language,
            "model": self.model,
            "prompt": prompt,
            "region": self.region,
            "answer_language": self.answer or None,
            "fallback": self.fallback,
            "detect_ms": round(detect_ms, 3),
        }


def route_prompts(prompts: str, answer: str, question_lang: str = DEFAULT_LANG) -> Prompts:
    """The prompts of prompts/<prompts>.md ("en": prompts/*.md) with the line that asks for the answer in
    `answer` (none for English answers to English prompts, or when `answer` is ""); answers are trimmed as
    replies to a question in `question_lang`."""
    if not answer or answer == prompts == DEFAULT_LANG:
        return Prompts(prompts, question_lang=question_lang)
    if answer == prompts:
        return Prompts(prompts, language_prompts(prompts).get("answer_in", ""), question_lang=question_lang)
    name = LANGUAGES[answer].name if answer in LANGUAGES else answer
    return Prompts(prompts, f"Answer in {name}, in the words of the sources.", question_lang=question_lang)


def route_configs(settings: Settings) -> dict[str, RouteConfig]:
    """The built-in routes with config.toml's `[routes.xx]` fields on top."""
    configs = {code: RouteConfig(region=language.region) for code, language in LANGUAGES.items()}
    for code, given in settings.routes.items():
        base = configs.get(code.lower(), RouteConfig())
        configs[code.lower()] = base.model_copy(update=given.model_dump(exclude_unset=True))
    configs.pop(DEFAULT_LANG, None)  # English is the default route: the settings' model, region and prompts
    return configs


def model_mb(spec: ModelSpec) -> float:
    """A model's memory estimate: its GGUF file's size, else its preset's, else 0 (a server's model)."""
    path = Path(spec.target)
    if spec.backend == "llama-cpp" and path.is_file():
        return path.stat().st_size / 2**20
    return float(spec.preset.size_mb) if spec.preset and spec.backend != "openai" else 0.0


@dataclass
class ModelPool:
    """Route models loaded on first use; least recently used ones are released to stay within `budget_mb`."""

    budget_mb: float
    load: Callable[[ModelSpec], ModelBackend]
    loaded: OrderedDict[tuple[str, str], tuple[ModelBackend, float]] = field(default_factory=OrderedDict)

    def get(self, spec: ModelSpec) -> tuple[ModelBackend, float, list[str]]:
        """The model, the seconds its load took now (0 if it was loaded) and notes of what was released."""
        key = spec.key
        if key in self.loaded:
            self.loaded.move_to_end(key)
            return self.loaded[key][0], 0.0, []
        size, notes = model_mb(spec), []
        while self.loaded and sum(mb for _, mb in self.loaded.values()) + size > self.budget_mb:
            _, (old, mb) = self.loaded.popitem(last=False)
            notes.append(f"released {old.name} ({mb:.0f} MB) to stay within route_memory_mb={self.budget_mb:.0f}")
            close_model(old)
        start = time.perf_counter()
        model = self.load(spec)
        self.loaded[key] = (model, size)
        return model, time.perf_counter() - start, notes

    def clear(self) -> None:
        """Release every model."""
        while self.loaded:
            _, (model, _) = self.loaded.popitem(last=False)
            close_model(model)


@dataclass
class Router:
    """Chooses each question's route (detection and the route table) and holds the route models, loaded on first
    use (`pool`). The default route is answered by the caller's own model (assistant/runner.py)."""

    settings: Settings
    default_model: str  # the name of the default model, which answers routes that name none
    loader: Callable[[Settings, ModelSpec], ModelBackend] = load_model
    pool: ModelPool = field(init=False)
    configs: dict[str, RouteConfig] = field(init=False)
    routes: dict[str, Route] = field(init=False, default_factory=dict)
    languages: tuple[str, ...] = field(init=False, default=())  # the candidates of detection, once it is needed

    def __post_init__(self) -> None:
        self.configs = route_configs(self.settings)
        self.pool = ModelPool(self.settings.route_memory_mb, lambda spec: self.loader(self.settings, spec))

    def detect(self, question: str, lang: str | None = None) -> Detection:
        """The question's language: `lang` or the `lang` setting if not auto, else detected."""
        forced = (lang or self.settings.lang).strip().lower()
        if forced != "auto":
            if not re.fullmatch(r"[a-z]{2,3}", forced):
                raise BadInput(f"--lang {forced!r}: use auto or a language code such as fr")
            return Detection(forced, 1.0, 0.0, forced=True)
        self.languages = self.languages or detectable([DEFAULT_LANG, *self.configs])
        return detect(question, self.languages)

    def route(self, detection: Detection) -> Route:
        """The route a detection takes."""
        code, threshold = detection.lang, self.settings.lang_threshold
        if code is None:
            return self.default("no letters to detect a language from: default route")
        if not detection.forced and detection.confidence < threshold:
            return self.default(f"detection unsure ({code} {detection.confidence:.2f} < {threshold}): default route")
        if code == DEFAULT_LANG:
            return self.default(None)
        if code not in self.configs:
            return self.default(f"no route for {code}: default route")
        if code not in self.routes:
            self.routes[code] = self._route(code, self.configs[code])
        return self.routes[code]

    def default(self, why: str | None) -> Route:
        """The default route: the default model, the English prompts, the settings' region."""
        return Route(DEFAULT_LANG, self.default_model, ENGLISH, self.settings.region, DEFAULT_LANG, why)

    def _route(self, code: str, config: RouteConfig) -> Route:
        prompts = config.prompts or DEFAULT_LANG
        answer = code if config.answer is None else config.answer
        region = config.region or self.settings.region
        spec, name, why = self._model_for(code, config.model)
        if prompts != DEFAULT_LANG and not language_prompts(prompts):
            why = "; ".join(filter(None, [why, f"no prompts/{prompts}.md: the English prompts"]))
            prompts = DEFAULT_LANG
        return Route(code, name, route_prompts(prompts, answer, code), region, answer, why, spec)

    def _resolve(self, name: str) -> ModelSpec:
        return resolve_model(self.settings.model_copy(update={"model": name}))

    def _model_for(self, code: str, wanted: str | None) -> tuple[ModelSpec | None, str, str | None]:
        """The route's model spec (None: the default model), its name, and the fallback taken if any."""
        why = f"no model configured for {code}"
        if wanted:
            try:
                return self._resolve(wanted), wanted, None
            except AssistantError as e:
                why = f"model {wanted} for {code} is unavailable ({e})"
        fallback = self.settings.multilingual_model.strip()
        if self.settings.backend == "openai" and fallback == "auto":  # a server serves its own models, not presets
            return (
                None,
                self.default_model,
                f"{why}: with --backend openai the default model {self.default_model} answers",
            )
        for name in MULTILINGUAL if fallback == "auto" else [] if fallback in ("", "none") else [fallback]:
            try:
                return self._resolve(name), name, f"{why}: the multilingual model {name} answers"
            except AssistantError as e:
                if fallback != "auto":
                    why += f"; multilingual model {name} is unavailable ({e})"
        return None, self.default_model, f"{why}: the default model {self.default_model} answers"

    def close(self) -> None:
        """Release the route models."""
        self.pool.clear()


def measure(folder: Path, threshold: float, languages: tuple[str, ...]) -> str:
    """A markdown table: per language of `folder/*.questions.jsonl` ({question, lang}), how often detection picks
    it, how often the question takes its own route, and the time detection takes per query."""
    import statistics

    identifier.cache_clear()
    _identifier.cache_clear()
    start = time.perf_counter()
    detect("warm up", languages)  # reads the model and restricts it to `languages`
    load = time.perf_counter() - start
    rows, times = [], []
    for path in sorted(folder.glob("*.questions.jsonl")):
        records = jsonl_rows(path)
        lang = records[0]["lang"]
        top = own = other = 0
        for record in records:
            d = detect(record["question"], languages)
            times.append(d.seconds * 1000)
            top += d.lang == lang
            taken = d.lang if d.lang and d.confidence >= threshold else DEFAULT_LANG
            own += taken == lang
            other += taken not in (lang, DEFAULT_LANG)
        n = len(records)
        rows.append(f"| {lang} | {n} | {top / n:.4f} | {own / n:.4f} | {other / n:.4f} |")
    times.sort()
    p95 = times[int(0.95 * len(times))] if times else 0.0
    head = ["| language | questions | detected | own route | another language's route |", "|---|---|---|---|---|"]
    tail = (
        f"\n{len(languages)} candidate languages, threshold {threshold}; detection per query: mean "
        f"{statistics.mean(times or [0]):.3f} ms, median {statistics.median(times or [0]):.3f} ms, p95 {p95:.3f} ms, "
        f"max {max(times or [0]):.1f} ms; first use (reading the model) {load:.2f} s"
    )
    return "\n".join(head + rows) + tail


if __name__ == "__main__":  # pragma: no cover
    import argparse

    from assistant.settings import load_settings

    parser = argparse.ArgumentParser(description="Show the route of questions, or measure detection.")
    parser.add_argument("questions", nargs="*", help="questions to route")
    parser.add_argument("--measure", type=Path, help="folder of LANG.questions.jsonl files (XQuAD)")
    args = parser.parse_args()
    settings = load_settings()
    codes = detectable([DEFAULT_LANG, *route_configs(settings)])
    if args.measure:
        print(measure(args.measure, settings.lang_threshold, codes))
    for q in args.questions:
        d = detect(q, codes)
        taken = d.lang if d.lang and d.confidence >= settings.lang_threshold else f"{DEFAULT_LANG} (default)"
        print(f"{d.lang} {d.confidence:.3f} ({d.seconds * 1000:.2f} ms) → route {taken}\t{q}")
