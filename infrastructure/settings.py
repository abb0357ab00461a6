"""One settings object for every process, read from `TULIFO_*` environment variables.

Development defaults let `tulifo dev` run with nothing configured; in production
(`TULIFO_ENV=production`) the same defaults are refused so a forgotten secret never ships.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that only exist so a developer can start the system without configuring anything.
DEV_ACCESS_SECRET = "dev-access-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_REFRESH_SECRET = "dev-refresh-secret-change-me-0123456789abcdef"  # noqa: S105
DEV_STRIPE_WEBHOOK_SECRET = "whsec_dev_only"  # noqa: S105
DEV_STRIPE_API_KEY = "sk_test_dev_only"
# A fixed VAPID key pair for development only, so browser subscriptions made against a dev API
# survive its restarts (a key generated per process would orphan them all). Public half:
# BBNnYgO0G901sICZd_iIPXO0MBKTe4WqCBd1hhFugbHs3PYMEaLbPxzVLyrjy0-562ZjSXCAa2LwS9pS2_GC5NE
DEV_VAPID_PRIVATE_KEY = "ZzF8NTyxoKo0WwxaeLprI9YN8Lw64bIL2hJkiOTDwMA"
DEV_VAPID_SUBJECT = "mailto:dev@tulifo.local"
# JWT HS256 keys shorter than the hash output (32 bytes) are brute-forceable; RFC 7518 §3.2.
MIN_SECRET_BYTES = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TULIFO_", env_file=None, extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    service_name: str = "tulifo"
    log_level: str = "INFO"
    log_json: bool = True
    # FastAPI's native OpenTelemetry spans and metrics per request, for a process with an SDK
    # provider configured. Off: deciding each request that no provider is set costs ~10 us.
    opentelemetry: bool = False

    # --- service URLs (DESIGN.md §5): each is probed; unset or silent ones get an embedded stand-in
    database_url: str = "postgresql://postgres@127.0.0.1:5432/tulifo"
    redis_url: str = "redis://127.0.0.1:6379/0"
    kafka_bootstrap: str = "127.0.0.1:9092"
    mongo_url: str = "mongodb://127.0.0.1:27017"
    mongo_database: str = "tulifo"
    rabbitmq_url: str | None = "amqp://guest:guest@127.0.0.1:5672/"
    elasticsearch_url: str | None = None
    # Put before the seed's index names (`workers`, `projects`): several deployments, or test
    # runs, can share one cluster.
    search_index_prefix: str = ""
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    mail_from: str = "Tulifo Gig <no-reply@tulifo.local>"

    # --- HTTP
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    cors_origins: list[str] = Field(default_factory=lambda: ["http://localhost:3000"])
    # 1 MiB covers every JSON body we accept (the largest is a profile with a portfolio list).
    max_body_bytes: int = 1_048_576

    # --- auth (seed contract, DESIGN.md §3)
    jwt_access_secret: SecretStr = SecretStr(DEV_ACCESS_SECRET)
    jwt_refresh_secret: SecretStr = SecretStr(DEV_REFRESH_SECRET)
    access_token_ttl_seconds: int = 15 * 60
    refresh_token_ttl_seconds: int = 7 * 24 * 3600
    bcrypt_rounds: int = 12
    # Hashes (logins, registrations) that may wait per bcrypt thread; past that they get 503
    # with Retry-After at once. 8 is ~2 s of waiting at cost 12 (api/auth/passwords.py).
    bcrypt_queue_per_thread: int = 8
    # Login throttling: attempts per window, per email and per client IP.
    login_max_per_email: int = 5
    login_max_per_ip: int = 20
    login_window_seconds: int = 15 * 60
    # Registrations per client IP per hour: each costs a bcrypt hash (~250 ms of a core).
    register_max_per_ip: int = 10
    register_window_seconds: int = 3600

    # --- Kafka / Faust
    topic_prefix: str = "tulifo"
    topic_partitions: int = 4
    # 1 suits one broker (Tansu, a laptop); production clusters set 3.
    topic_replication_factor: int = 1
    faust_app_id: str = "tulifo-gig"
    faust_data_dir: str = ".tulifo/faust"
    # Faust's default linger (0) sends one request per table update; 10 ms roughly doubled
    # table throughput on Tansu (DESIGN.md §7).
    producer_linger_ms: int = 10
    broker_session_timeout: float = 10.0
    # How long a worker waits for the broker to ack what it produced before it sends again.
    # Faust's default (producer_request_timeout, 20 minutes) let one lost produce response stall
    # a fold silently for that long; resending is safe (folds dedupe by sequence, sinks by
    # event_id), so a short wait and a retry with a warning is the better failure.
    kafka_ack_timeout_seconds: float = Field(default=15.0, gt=0)
    # Tansu answers InitProducerId with an error; "auto" falls back to acks=all, loudly.
    kafka_idempotence: Literal["auto", "on", "off"] = "auto"
    # Faust's web server (health, /metrics); None keeps it off so workers on one machine never
    # collide on its default port 6066.
    faust_web_port: int | None = None
    # A failing dependency (MongoDB, SMTP) is retried in place with capped exponential backoff,
    # 0.5 s doubling to this cap; after the last attempt the event goes to the dead-letter topic.
    # 8 attempts with a 10 s cap wait ~35 s in all: under Faust's 60 s rebalance timeout, which a
    # rebalance waiting for the event in hand would otherwise overrun.
    agent_retry_attempts: int = 8
    agent_retry_max_seconds: float = 10.0
    # Stateful agents (agents/folding.py) fold up to this many messages at a time, waiting at
    # most this long for a batch to fill: one changelog record per key per batch instead of one
    # per event, and one read-model write per batch. A message is a pack of up to 200 events
    # (streams/packing.py), so a batch is up to ~40k events when a backlog is read. 0.1 s keeps
    # materialization lag well under §6's 500 ms at 1k events/s.
    fold_batch_max: int = 200
    fold_batch_seconds: float = 0.1
    # Tansu answers a waiting fetch only when the wait runs out: Faust's hard-coded 1,500 ms made
    # produce->consume ~384 ms median there (DESIGN.md §7). At 1k events/s end to end, 500 ms
    # gave a materialization lag p99 of 434-781 ms, 100 ms gave 420 ms (bench/README.md).
    consumer_fetch_max_wait_ms: int = 100
    # Which agents a worker runs (comma-separated names of streams/app.py AGENT_MODULES); empty
    # runs them all. `tulifo replay` runs only the read-model folds, so a rebuild sends no email.
    worker_agents: str = ""

    # --- matching (agents/matching.py): how many workers each open project's ranking keeps
    match_top_k: int = Field(default=50, ge=1, le=500)

    # --- outbox relay
    relay_batch_size: int = 500
    relay_poll_seconds: float = 0.5
    # Prometheus endpoint of the relay process; None serves none.
    relay_metrics_port: int | None = None

    # --- RabbitMQ bridge (bridges/rabbitmq.py): the topic exchange every event is republished to
    rabbitmq_exchange: str = "tulifo.events"
    # Prometheus endpoint of the bridge process; None serves none.
    bridge_metrics_port: int | None = None

    # --- real-time messaging (api/realtime/): a WebSocket opens with a one-use ticket that lives
    # this long (a page asks for it just before connecting); every heartbeat refreshes the
    # socket's presence and closes it once its session is revoked or its access token expired.
    realtime_ticket_ttl_seconds: int = Field(default=30, ge=1, le=300)
    realtime_heartbeat_seconds: float = Field(default=15.0, gt=0, le=300)

    # --- scheduled jobs (tables/jobs.py, agents/jobs.py, bridges/jobs.py: `tulifo jobs`)
    # How long a client has to answer a delivery (accept, ask for changes, dispute) before the
    # escrow is released to the worker for them: the seed's 14 days.
    review_window_seconds: float = Field(default=1_209_600, ge=0)
    # A pending bid expires after this: 14 days, a price and an availability a worker can still
    # be held to; an open project's client has had two weeks to compare its bids.
    bid_expiry_seconds: float = Field(default=1_209_600, ge=0)
    # A PaymentIntent still pending this long after it was created is asked about at Stripe, in
    # case its webhook was lost: Stripe retries a webhook within minutes, so 10 minutes rarely
    # does the webhook's work for it.
    payment_reconcile_after_seconds: float = Field(default=600, ge=0)
    # Both parties of an awarded project are reminded this long before its deadline: two days
    # leave time to finish, or to agree on another date.
    deadline_reminder_seconds: float = Field(default=172_800, ge=0)
    # How often the periodic sweeps run (stale PaymentIntents, refunds a Stripe outage left
    # pending).
    jobs_sweep_seconds: float = Field(default=300, gt=0)
    # A job failing this many times is dead (admins see it, and may retry it); with the backoff
    # (30 s doubling to 1 h) ten attempts span ~4 hours.
    jobs_max_attempts: int = Field(default=10, ge=1)
    jobs_backoff_first_seconds: float = Field(default=30.0, gt=0)
    jobs_backoff_max_seconds: float = Field(default=3600.0, gt=0)
    # A runner's claim on a job: renewed while the job runs, so only a dead runner's job is
    # taken over, this long after its last renewal.
    jobs_lease_seconds: float = Field(default=60.0, gt=0)
    # How often an idle runner looks for due jobs.
    jobs_poll_seconds: float = Field(default=1.0, gt=0)

    # --- Stripe
    stripe_api_key: SecretStr = SecretStr(DEV_STRIPE_API_KEY)
    stripe_api_base: str | None = None
    stripe_webhook_secret: SecretStr = SecretStr(DEV_STRIPE_WEBHOOK_SECRET)
    # How long a request waits on a Stripe that does not answer (the library's default is 80 s).
    # Stripe answers in well under a second; no database connection is held meanwhile, but the
    # client's request is. Worst case per call: (retries + 1) * (connect + read) plus backoff,
    # ~25 s with these, under a browser's or proxy's usual 30 s.
    stripe_connect_timeout_seconds: float = Field(default=2.0, gt=0)
    stripe_read_timeout_seconds: float = Field(default=10.0, gt=0)
    # Safe because every write carries an idempotency key: a retried POST is answered from
    # Stripe's idempotency cache, it does not charge or refund twice.
    stripe_max_network_retries: int = Field(default=1, ge=0, le=5)
    # What a 503 for an unreachable Stripe tells the client to wait before trying again.
    stripe_retry_after_seconds: int = Field(default=5, ge=1)

    # --- Web Push (VAPID, RFC 8292; bridges/webpush.py). Browsers subscribe with the public key
    # and push services check every message's signature against it: changing the pair orphans
    # every stored subscription. The private key is PEM or base64url of the raw 32-byte P-256
    # scalar (what `vapid --gen` and web-push's generateVAPIDKeys print).
    vapid_private_key: SecretStr = SecretStr(DEV_VAPID_PRIVATE_KEY)
    # base64url of the uncompressed P-256 point; derived from the private key when unset, and
    # refused at first use when it does not belong to it.
    vapid_public_key: str | None = None
    # Who a push service contacts about our traffic: a mailto: or https: URL (RFC 8292 §2.1).
    vapid_subject: str = DEV_VAPID_SUBJECT

    @field_validator(
        "rabbitmq_url",
        "elasticsearch_url",
        "smtp_username",
        "smtp_password",
        "stripe_api_base",
        "faust_web_port",
        "relay_metrics_port",
        "vapid_public_key",
        "bridge_metrics_port",
        mode="before",
    )
    @classmethod
    def _empty_means_unset(cls, value: object) -> object:
        # `TULIFO_RABBITMQ_URL=` is how a launcher hands "off" to a child process.
        return None if value == "" else value

    @field_validator("vapid_subject")
    @classmethod
    def _vapid_subject_is_a_contact(cls, value: str) -> str:
        if not value.startswith(("mailto:", "https://")):
            raise ValueError("TULIFO_VAPID_SUBJECT must be a mailto: or https:// URL")
        return value

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        secrets = {
            "TULIFO_JWT_ACCESS_SECRET": (self.jwt_access_secret, DEV_ACCESS_SECRET),
            "TULIFO_JWT_REFRESH_SECRET": (self.jwt_refresh_secret, DEV_REFRESH_SECRET),
            "TULIFO_STRIPE_WEBHOOK_SECRET": (self.stripe_webhook_secret, DEV_STRIPE_WEBHOOK_SECRET),
            "TULIFO_STRIPE_API_KEY": (self.stripe_api_key, DEV_STRIPE_API_KEY),
            "TULIFO_VAPID_PRIVATE_KEY": (self.vapid_private_key, DEV_VAPID_PRIVATE_KEY),
        }
        for name, (value, dev_default) in secrets.items():
            if value.get_secret_value() == dev_default:
                problems.append(f"{name} is the development default")
        for name, value in (
            ("TULIFO_JWT_ACCESS_SECRET", self.jwt_access_secret),
            ("TULIFO_JWT_REFRESH_SECRET", self.jwt_refresh_secret),
        ):
            if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
                problems.append(f"{name} must be at least {MIN_SECRET_BYTES} bytes")
        if self.jwt_access_secret.get_secret_value() == self.jwt_refresh_secret.get_secret_value():
            problems.append("TULIFO_JWT_ACCESS_SECRET and TULIFO_JWT_REFRESH_SECRET must differ")
        if self.vapid_subject == DEV_VAPID_SUBJECT:
            problems.append("TULIFO_VAPID_SUBJECT is the development default")
        if "*" in self.cors_origins:
            problems.append("TULIFO_CORS_ORIGINS must not be '*' in production")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @property
    def is_production(self) -> bool:
        return self.env == "production"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
