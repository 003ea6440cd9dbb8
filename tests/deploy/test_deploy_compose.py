"""compose.yaml parses, and its services, health checks and settings match what the code expects."""

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from kiln.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "store", "bus", "gateway", "worker", "kiln")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def test_services_present(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"rabbitmq", "postgres", "gateway", "worker"}
    assert compose["services"]["worker"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize("name", ["rabbitmq", "postgres", "gateway"])
def test_health_checks(compose: dict[str, Any], name: str) -> None:
    check = compose["services"][name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert check["retries"] > 0


@pytest.mark.parametrize("name", ["gateway", "worker"])
def test_kiln_services_wait_for_healthy_dependencies(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert service["depends_on"] == {
        "rabbitmq": {"condition": "service_healthy"},
        "postgres": {"condition": "service_healthy"},
    }
    assert service["command"] == [name]
    env = service["environment"]
    assert env["KILN_DATABASE_URL"].startswith("postgresql://")
    assert env["KILN_BROKER_URL"].startswith("amqp://")


@pytest.mark.parametrize("name", ["gateway", "worker"])
def test_every_setting_exists_and_parses(compose: dict[str, Any], name: str) -> None:
    env = compose["services"][name]["environment"]
    known = {env_name(field): field for field in Settings.__struct_fields__}
    assert set(env) <= set(known), set(env) - set(known)
    values = {known[key]: value for key, value in env.items()}
    msgspec.convert(values, Settings, strict=False, dec_hook=lambda t, v: Path(v))


def test_credentials_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    rabbit, postgres = services["rabbitmq"]["environment"], services["postgres"]["environment"]
    env = services["gateway"]["environment"]
    user, password = rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"]
    assert f"amqp://{user}:{password}@rabbitmq:5672/" == env["KILN_BROKER_URL"]
    db = f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/"
    assert env["KILN_DATABASE_URL"] == f"postgresql://{db}{postgres['POSTGRES_DB']}"


def test_image_holds_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in PACKAGES:
        assert f"COPY {package} {package}" in dockerfile
