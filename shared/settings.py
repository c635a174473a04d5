"""The one settings class: every tunable comes from `LLMJOBS_*` variables or `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

BACKEND_KINDS = ("local", "ollama", "openai", "azure_openai", "openai_compatible")
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "secret", "password"}


class Settings(BaseSettings):
    """Configuration of api, orchestrator and workers."""

    model_config = SettingsConfigDict(env_prefix="LLMJOBS_", env_file=".env", extra="ignore")

    env: str = Field("dev", description="dev, test or prod; prod refuses placeholder secrets")
    database_url: str = "sqlite:///./var/llm-jobs.db"
    data_dir: Path = Path("./var/data")
    redis_url: str | None = Field(
        None, description="Broker and shared state; unset means 127.0.0.1:6379 or an embedded one"
    )
    broker_key_prefix: str = Field(
        "", description="Prefix of every broker key, so several systems can share one Redis"
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_base_url: str | None = Field(
        None,
        description="Absolute base of every URL the system hands out (Location headers, "
        "output files, webhook payloads); default: http://<api_host>:<api_port>",
    )
    log_level: str = "INFO"
    log_json: bool = True

    default_backend: str | None = Field(
        None, description="Backend used when a job names none; default: the first configured"
    )
    backends: str | None = Field(
        None, description="Comma-separated backends to run workers for; default: all configured"
    )

    ollama_base_url: str | None = None
    ollama_model: str = "llama3.2"
    ollama_keep_alive: str = "5m"
    openai_base_url: str = "https://api.openai.com/v1"
    openai_api_key: str | None = None
    openai_organization: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_compatible_base_url: str | None = None
    openai_compatible_api_key: str | None = None
    openai_compatible_model: str = "default"
    azure_openai_endpoint: str | None = None
    azure_openai_api_key: str | None = None
    azure_openai_api_version: str = "2024-10-21"
    azure_openai_deployment: str | None = None

    local_enabled: bool = True
    local_model_path: Path | None = Field(
        None, description="GGUF file for the local backend; default: the bundled SmolLM2-135M"
    )
    local_context_tokens: int = 2048
    local_threads: int | None = None
    local_max_tokens: int = 256

    backends_file: Path | None = Field(
        None, description="YAML or TOML file listing named backend instances (several per kind)"
    )
    backend_api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='JSON map of backend instance name to API key, e.g. {"ollama2": "sk-..."}',
    )
    breaker_failures: int = Field(
        5, description="Consecutive failed calls that open a backend's circuit breaker"
    )
    breaker_cooldown_s: float = Field(
        30.0, description="How long an open breaker stays open before a half-open probe"
    )
    breaker_max_wait_s: float = Field(
        60.0, description="Longest a step waits for an open breaker (without a fallback)"
    )
    limit_lease_s: float = Field(
        10.0, description="Concurrency-slot lease (renewed while held); a killed worker's slot "
        "frees after this"
    )
    stream_chat: bool = Field(True, description="Stream chat steps from backends that can")
    backend_timeout_s: float = Field(120.0, description="One HTTP call to a backend")
    step_deadline_s: float = Field(600.0, description="A step's whole life, retries included")
    retry_max_attempts: int = 6
    retry_initial_wait_s: float = 0.5
    retry_max_wait_s: float = 30.0
    worker_concurrency: int = 8
    context_tokens: int = Field(8192, description="Context window assumed for remote models")
    summary_max_tokens: int = 512

    step_lease_s: float = Field(30.0, description="A running step's lease; the worker renews it")
    heartbeat_s: float = 5.0
    sweep_interval_s: float = 10.0
    queued_resend_after_s: float = Field(
        30.0, description="Re-send a queued step or job whose message seems lost after this long"
    )
    job_max_age_s: float = Field(86400.0, description="Jobs still unfinished after this fail")
    visibility_timeout_s: int = 3600

    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 50 * 1024 * 1024
    max_messages: int = 256
    max_text_chars: int = 2_000_000
    poll_retry_after_s: int = 2
    openai_chat_timeout_s: float = Field(
        120.0, description="How long POST /v1/chat/completions waits before answering 504"
    )
    wait_recheck_s: float = Field(
        3.0, gt=0, description="A waiting request (?wait=, chat completions, job events) "
        "re-reads its job this often in case the push of the job's end was lost"
    )
    job_end_publish: bool = Field(
        True, description="Publish each job's end on Redis so waiting requests answer at "
        "once; off, they find it only by their periodic re-read"
    )
    openai_batch_max_lines: int = Field(50_000, description="Lines a Batch API input may have")

    batch_max_rows: int = Field(100_000, description="Non-empty rows a batch file may have")
    sheet_max_rows: int = Field(
        1_000_000, ge=1, description="Rows a sheet, CSV or JSONL file may have, empty ones included"
    )
    sheet_max_columns: int = Field(
        16_384, ge=1, le=16_384, description="Columns a sheet or CSV file may have (Excel's own)"
    )
    sheet_max_cell_chars: int = Field(
        200_000, ge=1, description="Characters an input cell of a batch file may hold"
    )
    archive_max_uncompressed_bytes: int = Field(
        256 * 1024 * 1024, ge=1,
        description="Total unpacked size of a zip-based upload (.xlsx, .docx)",
    )
    archive_max_member_bytes: int = Field(
        128 * 1024 * 1024, ge=1, description="Unpacked size of one part of a zip-based upload"
    )
    archive_max_ratio: float = Field(
        200.0, gt=1, description="Unpacked-to-packed size ratio a zip-based upload may reach"
    )
    archive_max_entries: int = Field(
        10_000, ge=1, description="Parts (files) a zip-based upload may hold"
    )
    batch_chunk_rows: int = Field(50, description="Rows per chunk step of a batch job")
    batch_window: int | None = Field(
        None, description="Chunk steps of one batch job sent at once; default from concurrency"
    )
    batch_share: float = Field(
        0.5, gt=0, le=1, description="Share of a backend's concurrency batch rows may use"
    )
    batch_row_concurrency: int | None = Field(
        None, description="Rows in flight per batch worker process; default: share x backend's"
    )
    batch_flush_s: float = Field(0.5, description="Store finished rows at least this often")
    batch_progress_s: float = Field(2.0, description="Update a batch job's progress this often")

    webhook_allow_hosts: str = Field(
        "", description="Comma-separated hosts or CIDRs webhooks may reach although private"
    )
    webhook_timeout_s: float = Field(15.0, description="One webhook delivery attempt")
    webhook_concurrency: int = Field(8, description="Deliveries at once per webhooks worker")
    webhook_progress_interval_s: float = Field(
        10.0, description="At most one job.progress event per job in this many seconds"
    )
    webhook_disable_after_days: float = Field(
        5.0, description="A subscription failing without a success this long is disabled"
    )
    webhook_resend_after_s: float = Field(
        60.0, description="Re-send a due delivery whose message seems lost after this long"
    )

    # Tenancy, limits and idempotency. 0 disables a limit.
    rate_limit_per_key_per_min: int = Field(
        1200, description="Requests per minute per API key (a key's own setting overrides)"
    )
    rate_limit_per_tenant_per_min: int = Field(
        6000, description="Requests per minute per tenant, all its keys together"
    )
    rate_limit_on_redis_down: Literal["local", "refuse", "open"] = Field(
        "local",
        description="While Redis is unreachable: local (each API process limits in memory, "
        "a key's full limit per process), refuse (503) or open (no limits)",
    )
    tenant_tokens_per_day: int = Field(
        0, description="Default tokens (prompt+completion) per tenant per UTC day; 0: unlimited"
    )
    tenant_max_running_jobs: int = Field(
        0, description="Default jobs running at once per tenant (more wait queued); 0: unlimited"
    )
    idempotency_ttl_s: float = Field(86400.0, description="How long an Idempotency-Key counts")
    idempotency_wait_s: float = Field(
        10.0, description="How long a duplicate waits for the first request's answer"
    )
    api_db_slots: int = Field(
        10, ge=1, le=32,
        description="Requests of one API process using the database at once (the rest wait)",
    )
    cors_origins: str = Field(
        "", description="Comma-separated origins allowed by CORS; empty: CORS off"
    )
    flower_port: int = 5555
    flower_basic_auth: str | None = Field(None, description="user:password for Flower")

    # Operations: metrics and retention.
    metrics_dir: Path | None = Field(
        None,
        description="Directory the processes of one host share for Prometheus multiprocess "
        "metrics; default: <data_dir>/metrics",
    )
    retention_days: float = Field(
        30.0, description="Finished jobs, their files and webhook deliveries older are purged; "
        "0 keeps everything"
    )
    retention_interval_s: float = Field(
        600.0, description="The sweep runs the retention purge at most this often"
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_postgres(cls, v: str) -> str:
        # Users paste plain postgres URLs; psycopg 3 is the driver installed.
        for prefix in ("postgres://", "postgresql://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.env == "prod":
            for name in ("openai_api_key", "azure_openai_api_key", "openai_compatible_api_key"):
                value = getattr(self, name)
                if value is not None and value.strip().lower() in PLACEHOLDER_SECRETS:
                    raise ValueError(f"LLMJOBS_{name.upper()} is a placeholder; set a real secret")
        return self

    @property
    def webhook_allow_list(self) -> list[str]:
        """LLMJOBS_WEBHOOK_ALLOW_HOSTS split into entries."""
        return [h.strip() for h in self.webhook_allow_hosts.split(",") if h.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        """LLMJOBS_CORS_ORIGINS split into origins."""
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def api_base_url(self) -> str:
        """The one base of the URLs clients are given: the public base, else the API's address."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        # A wildcard bind address is not something a client can connect to.
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "::", "") else self.api_host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.api_port}"

    @property
    def broker_url(self) -> str:
        return self.redis_url or "redis://127.0.0.1:6379/0"


@lru_cache
def get_settings() -> Settings:
    """Settings read once per process."""
    return Settings()
