"""One settings object. Precedence: CLI flag > environment variable (ASSISTANT_*) > config file > default.

The config file is TOML at `<user config dir>/config.toml`; `ASSISTANT_HOME` moves every user dir (config, data,
cache) under one folder, which is how tests isolate themselves. `assistant config` prints the resolved values.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP = "search-assistant"


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


class RouteConfig(BaseModel):
    """One language's route in config.toml (`[routes.de]`); what is left out comes from the built-in route."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(default=None, description="preset name or model path for this language")
    prompts: str | None = Field(default=None, description="prompts/<code>.md to use, or en for the English prompts")
    region: str | None = Field(default=None, description="search region for ddgs/searxng, e.g. de-de")
    answer: str | None = Field(default=None, description="language code of the answer; empty: no instruction")


class Settings(BaseSettings):
    """Everything a command can be told; each field is also `ASSISTANT_<NAME>` and a key in config.toml."""

    model_config = SettingsConfigDict(env_prefix="ASSISTANT_", extra="ignore")

    model: str | None = Field(None, description="preset name, GGUF path or Hugging Face id/folder")
    backend: Literal["llama-cpp", "transformers", "openai"] | None = Field(
        None, description="model backend; default: inferred from the model"
    )
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:8080/v1")
    api_key: str | None = Field(None, description="key for the OpenAI-compatible endpoint")
    search: str = Field("ddgs,local", description="search backend or fallback chain: ddgs, searxng, local, none")
    index: Path | None = Field(None, description="SQLite index for --search local (default: <data dir>/index.db)")
    searxng_url: str | None = Field(None, description="base URL of a SearXNG instance")
    region: str = Field("wt-wt", description="search region for ddgs/searxng, e.g. fr-fr")
    lang: str = Field("auto", description="language route: auto (detect each query) or a code such as fr")
    lang_threshold: float = Field(
        0.9, ge=0, le=1, description="a detected language below this confidence takes the default (English) route"
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
    max_results: int = Field(5, ge=1, le=20, description="search results per query")
    read_pages: int = Field(2, ge=0, le=10, description="pages fetched and read per web search")
    context_tokens: int = Field(600, ge=100, description="token budget for source text in the prompt")
    max_tokens: int = Field(256, ge=16, description="most tokens in an answer")
    n_ctx: int = Field(4096, ge=512, description="context window to allocate (llama.cpp) or to assume (openai)")
    threads: int | None = Field(None, ge=1, description="CPU threads for llama.cpp (default: all cores)")
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
        toml = TomlConfigSettingsSource(settings_cls, toml_file=config_dir() / "config.toml")
        return (init_settings, env_settings, toml)

    def index_path(self) -> Path:
        """The local index to use."""
        return Path(self.index).expanduser() if self.index else data_dir() / "index.db"

    def search_chain(self) -> list[str]:
        """The search backends to try, in order."""
        return [s.strip() for s in self.search.split(",") if s.strip()]


def load_settings(**overrides: Any) -> Settings:
    """Settings with CLI overrides (None means 'not given')."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
