"""The assistant as the commands use it: settings in, a loaded model and search chain, events out.

`Assistant.from_settings(s).ask(question)` is what `ask`, batches, evals and chat share.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from assistant.errors import AssistantError
from assistant.events import Event
from assistant.loop import answer
from assistant.models import ModelBackend, ModelSpec, load_model, resolve_model
from assistant.prompting import Turn, standalone_query
from assistant.search import make_search
from assistant.search.base import SearchBackend
from assistant.search.cache import Cache
from assistant.settings import Settings, cache_dir
from assistant.tools import ToolContext, default_tools
from assistant.web import FetchPolicy


@dataclass
class Assistant:
    """A loaded model plus the search chain and limits to answer with."""

    settings: Settings
    spec: ModelSpec
    model: ModelBackend
    search: SearchBackend | None
    cache: Cache | None
    load_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings, model: ModelBackend | None = None) -> Assistant:
        """Resolve and load everything the settings name (`model` skips loading, for tests and reuse)."""
        spec = resolve_model(settings) if model is None else ModelSpec("given", model.name)
        cache = Cache(cache_dir() / "cache.db", settings.cache_ttl)  # one cache for search results and pages
        search = make_search(settings, cache)  # before the model: a bad --search fails fast
        start = time.perf_counter()
        model = model or load_model(settings, spec)
        return cls(settings, spec, model, search, cache if cache.enabled else None, time.perf_counter() - start)

    def multi_step(self) -> bool:
        """Whether the model may search again on its own: a model trusted with tools, unless `loop` is single.

        Qwen-1.5B against searching once, per question (rows in docs/runs/tqa300-qwen15, first 100 TriviaQA, and
        hotpot50-qwen15, first 50 HotpotQA; written by two code versions, so unpublished until re-run, see
        docs/results.md "Removed"): never lower on EM (TriviaQA +1.0 [0, 3.0], HotpotQA +0.0), but lower on F1
        for one TriviaQA question (0.35 against 0.27; mean F1 +0.8 [-0.2, 2.1]; HotpotQA F1 +1.7 [0, 5.1]), at
        1.36x and 1.37x its prompt tokens."""
        return self.settings.loop != "single" and self.spec.tool_calling

    def ask(
        self, question: str, *, search: bool = True, multi: bool | None = None, history: Sequence[Turn] = ()
    ) -> Iterator[Event]:
        """Answer one question; `search=False` answers closed-book with the same model, `multi=False` searches
        once and answers (naive retrieve-then-answer), None follows the settings. `history`: a chat's earlier
        turns, oldest first (the newest that fit the window are shown to the model)."""
        question = " ".join(question.split())
        if not question:
            raise AssistantError('the question is empty — pass a question, e.g. assistant ask "Who painted X?"')
        s = self.settings
        ctx = None
        if search and self.search is not None:
            policy = FetchPolicy(allow_private=s.allow_private, timeout=s.fetch_timeout, max_bytes=s.fetch_max_bytes)
            ctx = ToolContext(
                standalone_query(question, history),  # pages are ranked against it: a follow-up needs context
                self.search,
                policy,
                self.model.count_tokens,
                self.cache,
                max_results=s.max_results,
                read_pages=s.read_pages,
                model=self.model,
            )
        load, self.load_seconds = self.load_seconds, 0.0  # the load is counted once, in the first answer
        yield from answer(
            question,
            self.model,
            ctx,
            default_tools(),
            max_steps=s.max_steps,
            multi=self.multi_step() if multi is None else multi,
            context_tokens=s.context_tokens,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            load_seconds=load,
            example=not (self.spec.preset and self.spec.preset.copies_examples),
            history=history,
        )
