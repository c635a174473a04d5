"""Named backend instances from a YAML or TOML file (`LLMJOBS_BACKENDS_FILE`)."""

from __future__ import annotations

import threading
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.backends.types import BackendConfig
from shared.settings import Settings

Kind = Literal["local", "ollama", "openai", "azure_openai", "openai_compatible"]
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


class BackendsFileError(ValueError):
    """The backends file cannot be used; the message says where and why."""


class InstanceSpec(BaseModel):
    """One entry of the file."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN)
    kind: Kind
    base_url: str | None = None
    api_key: str | None = None
    default_model: str | None = None
    max_concurrency: int = Field(8, ge=1, le=1024)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    context_tokens: int = Field(8192, ge=256)
    timeout_s: float | None = Field(None, gt=0)
    fallback: list[str] = Field(default_factory=list)
    keep_alive: str | None = None  # ollama
    organization: str | None = None  # openai
    api_version: str = "2024-10-21"  # azure_openai
    deployment: str | None = None  # azure_openai: default deployment when a job names none

    def to_config(self, keys: dict[str, str]) -> BackendConfig:
        """The runtime config; a key from the settings map wins over none at all."""
        if self.kind != "local" and not self.base_url:
            raise ValueError(f"backend {self.name!r} ({self.kind}) needs base_url")
        extra: dict[str, Any] = {}
        if self.kind == "ollama" and self.keep_alive:
            extra["keep_alive"] = self.keep_alive
        if self.kind == "openai":
            extra["organization"] = self.organization
        if self.kind == "azure_openai":
            extra["api_version"] = self.api_version
        return BackendConfig(
            name=self.name,
            kind=self.kind,
            base_url=self.base_url.rstrip("/") if self.base_url else None,
            api_key=self.api_key or keys.get(self.name),
            default_model=self.deployment or self.default_model,
            max_concurrency=self.max_concurrency,
            context_tokens=self.context_tokens,
            extra=extra,
            requests_per_minute=self.requests_per_minute,
            tokens_per_minute=self.tokens_per_minute,
            timeout_s=self.timeout_s,
            fallback=tuple(self.fallback),
        )


_cache: dict[tuple[str, float], list[InstanceSpec]] = {}
_cache_lock = threading.Lock()


def _entries(raw: Any) -> list[Any]:
    if isinstance(raw, dict) and "backends" in raw:
        raw = raw["backends"]
    if isinstance(raw, dict):
        # `name: {kind: ..., ...}` mapping form.
        return [{"name": name, **(spec or {})} for name, spec in raw.items()]
    if isinstance(raw, list):
        return raw
    raise BackendsFileError("expected a list of backends (or a `backends:` key holding one)")


def _parse(path: Path) -> list[InstanceSpec]:
    text = path.read_text()
    try:
        raw = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise BackendsFileError(f"{path}: not valid {path.suffix.lstrip('.')}: {exc}") from exc
    specs: list[InstanceSpec] = []
    for index, entry in enumerate(_entries(raw)):
        try:
            specs.append(InstanceSpec.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise BackendsFileError(
                f"{path}: backend #{index + 1} field {where!r}: {first['msg']}"
            ) from exc
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BackendsFileError(f"{path}: backend names must be unique; repeated: {dupes}")
    return specs


def load_backends_file(path: Path, settings: Settings) -> list[BackendConfig]:
    """The file's instances (re-read only when the file changes)."""
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise BackendsFileError(f"LLMJOBS_BACKENDS_FILE {path} cannot be read: {exc}") from exc
    key = (str(path.resolve()), mtime)
    with _cache_lock:
        specs = _cache.get(key)
    if specs is None:
        specs = _parse(path)
        with _cache_lock:
            _cache.clear()
            _cache[key] = specs
    configs: list[BackendConfig] = []
    for spec in specs:
        try:
            configs.append(spec.to_config(settings.backend_api_keys))
        except ValueError as exc:
            raise BackendsFileError(f"{path}: {exc}") from exc
    return configs
