"""docker-compose.yml cannot run here, so it is checked for what a typo would break: it parses,
every host and dependency the app names exists, and every TULIFO_* variable is a real setting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from infrastructure.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP = ("migrate", "api", "worker", "relay", "bridge")
# Where each service URL must point, by the compose service that provides it.
URL_SETTINGS = {
    "TULIFO_DATABASE_URL": "postgres",
    "TULIFO_REDIS_URL": "redis",
    "TULIFO_MONGO_URL": "mongodb",
    "TULIFO_RABBITMQ_URL": "rabbitmq",
    "TULIFO_ELASTICSEARCH_URL": "elasticsearch",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def app_env(compose: dict[str, Any], name: str) -> dict[str, str]:
    env = compose["services"][name]["environment"]
    assert isinstance(env, dict), f"{name}: environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


def test_the_stack_has_every_service_the_design_names(compose: dict[str, Any]) -> None:
    images = {name: svc.get("image", "") for name, svc in compose["services"].items()}
    assert images["postgres"].startswith("postgres:16")
    assert images["mongodb"].startswith("mongo:7")
    assert images["elasticsearch"].split(":")[-1].startswith("8.")
    assert images["redis"].startswith("redis:7")
    assert images["rabbitmq"].startswith("rabbitmq:3") and "management" in images["rabbitmq"]
    assert "mailpit" in images["mailpit"]
    assert "kafka" in images["kafka"] or "redpanda" in images["kafka"]
    for name in APP:
        assert compose["services"][name]["build"] == ".", f"{name} is not built from the repo"


@pytest.mark.parametrize("name", APP)
def test_app_processes_point_at_services_that_exist(compose: dict[str, Any], name: str) -> None:
    services = compose["services"]
    env = app_env(compose, name)
    for key, provider in URL_SETTINGS.items():
        assert urlsplit(env[key]).hostname == provider, f"{name}: {key}={env[key]}"
        assert provider in services
    assert env["TULIFO_KAFKA_BOOTSTRAP"].split(":")[0] in services
    assert env["TULIFO_SMTP_HOST"] in services
    advertised = services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert env["TULIFO_KAFKA_BOOTSTRAP"] in advertised


@pytest.mark.parametrize("name", APP)
def test_every_tulifo_variable_is_a_setting(compose: dict[str, Any], name: str) -> None:
    fields = {f"TULIFO_{field.upper()}" for field in Settings.model_fields}
    unknown = {key for key in app_env(compose, name) if key.startswith("TULIFO_")} - fields
    assert unknown == set(), f"{name} sets variables no setting reads: {sorted(unknown)}"


def test_dependencies_exist_and_wait_for_health_or_completion(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        for dependency, rule in svc.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            condition = rule["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            else:
                assert (dependency, condition) == ("migrate", "service_completed_successfully")
    for name in ("api", "worker", "relay"):
        rule = services[name]["depends_on"]["migrate"]
        assert rule["condition"] == "service_completed_successfully"
    assert services["migrate"]["restart"] == "no"
    for name in ("postgres", "kafka", "mongodb", "elasticsearch", "redis", "rabbitmq", "mailpit"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"


@pytest.mark.parametrize("name", ["api", "worker"])
def test_the_processes_that_search_or_index_wait_for_a_healthy_elasticsearch(
    compose: dict[str, Any], name: str
) -> None:
    service = compose["services"][name]
    assert urlsplit(app_env(compose, name)["TULIFO_ELASTICSEARCH_URL"]).port == 9200
    assert service["depends_on"]["elasticsearch"] == {"condition": "service_healthy"}


def test_secrets_are_required_from_the_environment_not_written_here(
    compose: dict[str, Any],
) -> None:
    env = app_env(compose, "api")
    assert env["TULIFO_ENV"] == "production"
    for key in (
        "TULIFO_JWT_ACCESS_SECRET",
        "TULIFO_JWT_REFRESH_SECRET",
        "TULIFO_STRIPE_API_KEY",
        "TULIFO_STRIPE_WEBHOOK_SECRET",
    ):
        assert re.fullmatch(r"\$\{" + key + r":\?[^}]+\}", env[key]), f"{key}={env[key]}"


def test_the_image_runs_as_a_non_root_user_without_the_local_extra() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    users = [line.split()[1] for line in dockerfile.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert installs and not any("[local]" in line or "[test]" in line for line in installs)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".tulifo", ".env"} <= set(ignored)
