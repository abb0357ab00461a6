"""URLs are reported without their passwords and re-pointed at other databases intact."""

from __future__ import annotations

from infrastructure.local.probes import database_name, redact, with_database


def test_redact_hides_the_password_and_keeps_everything_else() -> None:
    url = "amqp://tulifo:s3cret@rabbitmq:5672/vhost?heartbeat=30"
    assert redact(url) == "amqp://tulifo:***@rabbitmq:5672/vhost?heartbeat=30"
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_another_database_on_the_same_server_keeps_credentials_and_options() -> None:
    url = "postgresql://app:pw@db.internal:5433/tulifo?sslmode=require&host=/run/pg"
    assert database_name(url) == "tulifo"
    assert with_database(url, "postgres") == (
        "postgresql://app:pw@db.internal:5433/postgres?sslmode=require&host=/run/pg"
    )
