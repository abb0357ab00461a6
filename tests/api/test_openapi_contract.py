"""The OpenAPI document is the contract: schemathesis sends what it describes (and what it does
not) to the real server, signed in as a client and as a worker, and every answer must be no
server error, carry a status the document lists and a body that matches its schema."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from pydantic import SecretStr
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from infrastructure.processes import ManagedProcess, free_port
from infrastructure.settings import Settings
from tests.api.conftest import PASSWORD, unique_email

REPO = Path(__file__).resolve().parents[2]
# Built from the code, not fetched: the document under test is the one the server serves.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(env="test")).openapi())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
API = [sys.executable, "-m", "infrastructure.cli", "api", "--host", "127.0.0.1", "--port"]
# Bounded: ~40 operations, two callers; enough to reach every documented status, quick in CI.
EXAMPLES = 12


@dataclass(frozen=True)
class LiveApi:
    url: str
    tokens: dict[str, str]
    emails: dict[str, str]

    def sign_in(self, role: str) -> str:
        """A new session of the role's account: its access token."""
        response = httpx.post(
            f"{self.url}/api/auth/login",
            json={"email": self.emails[role], "password": PASSWORD},
            timeout=15,
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["data"]["accessToken"]
        return token


def settings_env(settings: Settings) -> dict[str, str]:
    """The TULIFO_* environment that configures a server exactly like `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TULIFO_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"TULIFO_{name.upper()}"] = str(value)
    return env


@pytest.fixture(scope="module")
def live_api(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    port = free_port()
    server = ManagedProcess.spawn(
        "api",
        [
            sys.executable,
            "-m",
            "infrastructure.cli",
            "api",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        # The session-ending cases sign in once per case (LiveApi.sign_in).
        env=settings_env(settings)
        | {"TULIFO_LOGIN_MAX_PER_EMAIL": "100000", "TULIFO_LOGIN_MAX_PER_IP": "100000"},
        cwd=REPO,
        log_path=tmp_path_factory.mktemp("contract") / "api.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=10) as http:

            def ready() -> bool:
                if not server.alive:
                    raise AssertionError("the API exited before it answered")
                try:
                    return http.get("/health").status_code == 200
                except httpx.TransportError:
                    return False

            deadline = time.monotonic() + 60
            while not ready():  # polled with a deadline, like tests.conftest.wait_until
                assert time.monotonic() < deadline, "the API did not answer within 60 s"
                time.sleep(0.1)
            tokens, emails = {}, {}
            for role in ("client", "worker"):
                emails[role] = unique_email(role)
                response = http.post(
                    "/api/auth/register",
                    json={
                        "email": emails[role],
                        "password": PASSWORD,
                        "name": "Contract Tester",
                        "role": role,
                    },
                )
                assert response.status_code == 201, response.text
                tokens[role] = response.json()["data"]["accessToken"]
        yield LiveApi(url, tokens, emails)
    finally:
        server.stop()


# Ending sessions would end the one token every other case signs with: those operations sign in
# afresh for each case (their behaviour is tests/api/test_sessions.py's).
ENDS_SESSIONS: dict[str, str] = {"method": "DELETE", "path_regex": r"^/api/sessions"}
CONTRACT = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


@SCHEMA.exclude(**ENDS_SESSIONS).parametrize()
@CONTRACT
@pytest.mark.parametrize("role", ["client", "worker"])
def test_every_answer_is_in_the_contract(
    case: schemathesis.Case, live_api: LiveApi, role: str
) -> None:
    check(case, live_api, live_api.tokens[role])


@SCHEMA.include(**ENDS_SESSIONS).parametrize()
@CONTRACT
@pytest.mark.parametrize("role", ["client", "worker"])
def test_every_answer_of_ending_a_session_is_in_the_contract(
    case: schemathesis.Case, live_api: LiveApi, role: str
) -> None:
    check(case, live_api, live_api.sign_in(role))


def check(case: schemathesis.Case, live_api: LiveApi, token: str) -> None:
    case.call_and_validate(
        base_url=live_api.url,
        headers={"Authorization": f"Bearer {token}"},
        checks=CHECKS,
        timeout=15,
    )


def test_public_operations_ask_for_no_token() -> None:
    paths = SCHEMA.raw_schema["paths"]
    assert "security" not in paths["/api/projects"]["get"]
    assert "security" not in paths["/api/projects/{project_id}"]["get"]
    assert paths["/api/projects"]["post"]["security"] == [{"HTTPBearer": []}]


def test_no_error_is_documented_in_a_shape_the_api_never_sends() -> None:
    spec = SCHEMA.raw_schema
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (
                        method,
                        path,
                        status,
                    )


def test_a_refused_cors_preflight_answers_in_the_envelope(live_api: LiveApi) -> None:
    response = httpx.options(
        f"{live_api.url}/api/projects",
        headers={
            "Origin": f"https://evil-{uuid.uuid4().hex[:6]}.example",
            "Access-Control-Request-Method": "POST",
        },
    )
    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == "CORS_REFUSED"
    assert body["error"]["details"] == {"refused": ["origin"]}
