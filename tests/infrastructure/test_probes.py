"""URLs are reported without their passwords and re-pointed at other databases intact; a
server that answers but refuses us stops the launch."""

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


def test_an_elasticsearch_that_refuses_our_credentials_stops_the_launch() -> None:
    import http.server
    import threading

    import pytest

    from infrastructure.local.probes import Refused, probe_elasticsearch

    class Locked(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(401)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Locked)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://elastic:wrong@127.0.0.1:{server.server_port}"
        with pytest.raises(Refused, match=r"HTTP 401.*credentials") as refused:
            probe_elasticsearch(url)
        assert "wrong" not in str(refused.value)
    finally:
        server.shutdown()
        server.server_close()
