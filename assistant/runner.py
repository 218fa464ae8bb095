"""The assistant as the commands use it: settings in, a loaded model and search chain, events out.

`Assistant.from_settings(s).ask(question)` is what `ask`, batches, evals and chat share. Each question goes down
a route (assistant/routing.py: its language's model, prompts, search region and answer language), chosen by the
assistant's `router` unless the caller passes one; the route is a value handed to the loop, never ambient state.
Close an assistant (`with Assistant.from_settings(s) as a:` or `a.close()`) to release its models, index
connections and HTTP clients.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from assistant.confidence import DEFAULT_THRESHOLD, Judging
from assistant.errors import BadInput
from assistant.events import Answer, Event
from assistant.loop import answer
from assistant.models import ModelBackend, ModelSpec, close_model, load_model, resolve_model
from assistant.prompting import Turn, standalone_query
from assistant.routing import DEFAULT_LANG, Detection, Route, Router, preload
from assistant.search import close_search, make_search
from assistant.search.base import SearchBackend
from assistant.search.cache import Cache
from assistant.search.embed import DEFAULT_EMBEDDER
from assistant.search.pages import PageRanker
from assistant.settings import Settings, cache_dir
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy

log = logging.getLogger(__name__)


@dataclass
class Assistant:
    """A loaded model plus the search chain and limits to answer with, and the router that picks each
    question's route (route models are loaded on first use)."""

    settings: Settings
    spec: ModelSpec
    model: ModelBackend
    search: SearchBackend | None
    cache: Cache | None
    load_seconds: float
    router: Router = field(init=False)
    ranker: PageRanker = field(init=False)  # web pages' passages, ranked as the local index ranks (one embedder)
    searches: dict[str, SearchBackend | None] = field(init=False, default_factory=dict)  # by region

    def __post_init__(self) -> None:
        self.router = Router(self.settings, self.model.name)
        s = self.settings
        self.ranker = PageRanker(s.retriever, s.embedder or DEFAULT_EMBEDDER, s.threads)

    @classmethod
    def from_settings(
        cls, settings: Settings, model: ModelBackend | None = None, spec: ModelSpec | None = None
    ) -> Assistant:
        """Resolve and load everything the settings name (`model`, with its `spec` if known, skips loading: for
        tests and reuse); route models wait for their first question."""
        if settings.lang.strip().lower() == "auto":
            threading.Thread(target=preload, daemon=True).start()  # language detection loads beside the model
        spec = spec or (resolve_model(settings) if model is None else ModelSpec("given", model.name))
        cache = Cache(cache_dir() / "cache.db", settings.cache_ttl)  # one cache for search results and pages
        search = make_search(settings, cache)  # before the model: a bad --search fails fast
        log.info("model %s (%s), search %s", spec.target, spec.backend, ",".join(settings.search_chain()) or "none")
        start = time.perf_counter()
        model = model or load_model(settings, spec)
        seconds = time.perf_counter() - start
        log.info("model %s loaded in %.2fs", model.name, seconds)
        return cls(settings, spec, model, search, cache if cache.enabled else None, seconds)

    def multi_step(self, spec: ModelSpec | None = None, model: ModelBackend | None = None) -> bool:
        """Whether the model (default: the default route's) may search again on its own: never with `loop`
        single; with multi, whenever its backend can call tools; with auto, only a preset trusted with tools
        (SmolLM2 is not; nor is a model of unknown kind).

        Qwen-1.5B against searching once, per question (rows in docs/runs/tqa300-qwen15, first 100 TriviaQA, and
        hotpot50-qwen15, first 50 HotpotQA; written by two code versions, so unpublished until re-run, see
        docs/results.md "Removed"): never lower on EM (TriviaQA +1.0 [0, 3.0], HotpotQA +0.0), but lower on F1
        for one TriviaQA question (0.35 against 0.27; mean F1 +0.8 [-0.2, 2.1]; HotpotQA F1 +1.7 [0, 5.1]), at
        1.36x and 1.37x its prompt tokens."""
        spec, model = spec or self.spec, model or self.model
        if self.settings.loop == "single" or not model.supports_tools:
            return False
        return self.settings.loop == "multi" or spec.tool_calling

    def ask(
        self,
        question: str,
        *,
        search: bool = True,
        multi: bool | None = None,
        history: Sequence[Turn] = (),
        lang: str | None = None,
        route: Route | None = None,
        show_uncertain: bool | None = None,
        instructions: str = "",
        max_tokens: int | None = None,
    ) -> Iterator[Event]:
        """Answer one question down its route; the Answer records `lang`, `lang_confidence` and `route`.

        `search=False` answers closed-book with the same model, `multi=False` searches once and answers (naive
        retrieve-then-answer), None follows the settings. `history`: a chat's earlier turns, oldest first (the
        newest that fit the window are shown to the model). `route`: the route to take (default: the router's
        choice for the question, with `lang` overriding detection). `show_uncertain=True` keeps an uncertain
        answer's best candidate whatever the settings say (evals score it); None follows them. `instructions`: an
        application's own, after the answering system prompts (prompting.Prompts); `max_tokens`: a lower cap on
        each answer than the settings'."""
        question = " ".join(question.split())
        if not question:
            raise BadInput('the question is empty — pass a question, e.g. assistant ask "Who painted X?"')
        if route is None:
            detection = self.router.detect(question, lang)
            route = self.router.route(detection)
        else:
            detection = Detection(route.language, 1.0, forced=True)
        spec, model, load, notes = self._model(route)
        judging = self.judging(spec)
        judging = judging if show_uncertain is None else replace(judging, show_uncertain=show_uncertain)
        prompts = replace(route.prompts, instructions=instructions) if instructions else route.prompts
        chain = self._search(route.region) if search else None
        # pages are ranked against the standalone query: a follow-up needs its context
        ctx = self._context(standalone_query(question, history), chain, model) if chain else None
        s = self.settings
        events = answer(
            question,
            model,
            ctx,
            default_tools(),
            prompts=prompts,
            max_steps=s.max_steps,
            multi=self.multi_step(spec, model) if multi is None else multi,
            context_tokens=s.context_tokens,
            shown_sources=s.shown_sources,
            evidence_tokens=s.evidence_tokens,
            max_tokens=min(max_tokens or s.max_tokens, s.max_tokens),
            temperature=s.temperature,
            load_seconds=load,
            answer_prompt=spec.answer_prompt,
            history=history,
            judging=judging,
        )
        for event in events:
            if isinstance(event, Answer):
                event.lang = detection.lang
                event.lang_confidence = round(detection.confidence, 3)
                event.route = route.record(detection.seconds * 1000)
                event.notes += notes
            yield event

    def judging(self, spec: ModelSpec | None = None) -> Judging:
        """What the loop does with confidence: the threshold set, else the preset's measured one, else 0.5; a
        second look if set, else as the preset was measured, else yes."""
        s, spec = self.settings, spec or self.spec
        measured = spec.preset.confidence_threshold if spec.preset else None
        threshold = next(t for t in (s.confidence_threshold, measured, DEFAULT_THRESHOLD) if t is not None)
        second_look = s.second_look if s.second_look is not None else (spec.preset.second_look if spec.preset else True)
        return Judging(threshold, second_look, s.uncertain_answers == "show")

    def baseline(self, question: str) -> Iterator[Event]:
        """The plain baseline (assistant/baseline.py) with the default model and search: what `--mode plain`
        measures every other mode against."""
        from assistant.baseline import plain_answer

        question = " ".join(question.split())
        if self.search is None:
            raise BadInput("the plain baseline needs search — pass e.g. --search local --index DB.db")
        load, self.load_seconds = self.load_seconds, 0.0
        for event in plain_answer(question, self.model, self._context(question, self.search, self.model)):
            if isinstance(event, Answer):
                event.timings["load"] = round(load, 3)
            yield event

    def _context(self, question: str, chain: SearchBackend, model: ModelBackend) -> ToolContext:
        """What the tools of one question work within."""
        s = self.settings
        policy = FetchPolicy(allow_private=s.allow_private, timeout=s.fetch_timeout, max_bytes=s.fetch_max_bytes)
        return ToolContext(
            question,
            chain,
            policy,
            model.count_tokens,
            self.cache,
            max_results=s.max_results,
            read_pages=s.read_pages,
            model=model,
            ranker=self.ranker,
        )

    def _model(self, route: Route) -> tuple[ModelSpec, ModelBackend, float, list[str]]:
        """The route's model, the seconds its load took now, and notes (a fallback, models released)."""
        if route.spec is not None and route.spec.key != self.spec.key:
            model, load, notes = self.router.pool.get(route.spec)
            return route.spec, model, load, notes
        load, self.load_seconds = self.load_seconds, 0.0  # the default model's load is counted once
        notes = (
            [f"route {route.language}: {route.fallback}"] if route.language != DEFAULT_LANG and not route.spec else []
        )
        return self.spec, self.model, load, notes

    def _search(self, region: str) -> SearchBackend | None:
        """The search chain in `region` (the default one when no web backend uses a region)."""
        if region == self.settings.region or not {"ddgs", "searxng"} & set(self.settings.search_chain()):
            return self.search
        if region not in self.searches:
            self.searches[region] = make_search(self.settings.model_copy(update={"region": region}), self.cache)
        return self.searches[region]

    def close(self, keep_model: bool = False) -> None:
        """Release the route models, index connections and HTTP clients, and the model unless `keep_model` (a
        new assistant goes on with it); the assistant cannot answer afterwards."""
        self.router.close()
        for chain in [self.search, *self.searches.values()]:
            close_search(chain)
        self.searches.clear()
        if not keep_model:
            close_model(self.model)

    def __enter__(self) -> Assistant:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
