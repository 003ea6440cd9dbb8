"""compose.yaml parses, and its services, health checks, start-up order and settings match what
the code expects."""

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from kiln.processes import DRAIN_SECONDS
from kiln.settings import Settings, build, env_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "runtime", "store", "bus", "lifecycle", "api", "gateway", "worker", "kiln")
SERVICES = {"rabbitmq", "postgres", "minio", "bucket", "gateway", "worker"}
LONG_RUNNING = sorted(SERVICES - {"bucket"})
KILN = ["gateway", "worker"]
ONE_SHOT = "service_completed_successfully"
HEALTHY = "service_healthy"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]  # type: ignore[no-any-return]


def kiln_env(service: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in service["environment"].items() if k.startswith("KILN_")}


def settings_of(service: dict[str, Any]) -> Settings:
    known = {env_name(field): field for field in Settings.__struct_fields__}
    return build({known[key]: value for key, value in kiln_env(service).items()})


def test_services_present(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES
    assert services["worker"]["deploy"]["replicas"] == 2


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_every_long_running_service_has_a_health_check(services: dict[str, Any], name: str) -> None:
    check = services[name]["healthcheck"]
    assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1
    assert check["retries"] > 0
    assert check["interval"] and check["timeout"]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_dependencies_wait_until_healthy_or_done(services: dict[str, Any], name: str) -> None:
    for dependency, condition in services[name].get("depends_on", {}).items():
        assert dependency in services, dependency
        if dependency == "bucket":
            assert condition == {"condition": ONE_SHOT}
        else:
            assert condition == {"condition": HEALTHY}
            assert "healthcheck" in services[dependency], dependency


def test_start_up_order(services: dict[str, Any]) -> None:
    assert set(services["gateway"]["depends_on"]) == {"rabbitmq", "postgres"}
    assert set(services["worker"]["depends_on"]) == {"rabbitmq", "postgres", "minio", "bucket"}
    assert set(services["bucket"]["depends_on"]) == {"minio"}


@pytest.mark.parametrize("name", KILN)
def test_kiln_services_run_their_command(services: dict[str, Any], name: str) -> None:
    assert services[name]["command"] == [name]
    settings = settings_of(services[name])
    assert settings.database_url.startswith("postgresql://")
    assert settings.broker_url.startswith("amqp://")
    assert settings.storage_url.startswith("s3://")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_kiln_setting_exists_and_parses(services: dict[str, Any], name: str) -> None:
    known = {env_name(field) for field in Settings.__struct_fields__}
    env = kiln_env(services[name]) if "environment" in services[name] else {}
    assert set(env) <= known, set(env) - known
    if env:
        settings_of(services[name])  # raises, naming the setting, if one is malformed


def _probe_url(service: dict[str, Any]) -> str:
    [url] = [arg for arg in service["healthcheck"]["test"] if arg.startswith("http")]
    return url


def test_gateway_health_check_asks_readiness(services: dict[str, Any]) -> None:
    settings = settings_of(services["gateway"])
    url = urlsplit(_probe_url(services["gateway"]))
    assert (url.port, url.path) == (settings.http_port, "/readyz")
    published = services["gateway"]["ports"][0]
    assert published.endswith(f":{settings.http_port}")


def test_gateway_authenticates(services: dict[str, Any]) -> None:
    settings = settings_of(services["gateway"])
    assert settings.token_secret and settings.admins


def test_worker_health_check_asks_its_side_port(services: dict[str, Any]) -> None:
    settings = settings_of(services["worker"])
    url = urlsplit(_probe_url(services["worker"]))
    assert settings.worker_http_port and settings.http_host == "0.0.0.0"
    assert (url.port, url.path) == (settings.worker_http_port, "/readyz")


@pytest.mark.parametrize("name", KILN)
def test_stop_grace_outlasts_the_drain(services: dict[str, Any], name: str) -> None:
    period = re.fullmatch(r"(\d+)s", services[name]["stop_grace_period"])
    assert period is not None
    seconds = int(period[1])
    assert seconds > DRAIN_SECONDS + settings_of(services[name]).shutdown_grace_seconds


def test_credentials_agree(services: dict[str, Any]) -> None:
    rabbit, postgres = services["rabbitmq"]["environment"], services["postgres"]["environment"]
    for name in KILN:
        env = services[name]["environment"]
        user, password = rabbit["RABBITMQ_DEFAULT_USER"], rabbit["RABBITMQ_DEFAULT_PASS"]
        assert f"amqp://{user}:{password}@rabbitmq:5672/" == env["KILN_BROKER_URL"]
        db = f"{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/"
        assert env["KILN_DATABASE_URL"] == f"postgresql://{db}{postgres['POSTGRES_DB']}"


def test_object_store_agrees(services: dict[str, Any]) -> None:
    minio = services["minio"]["environment"]
    worker = settings_of(services["worker"])
    assert (worker.s3_access_key_id, worker.s3_secret_access_key) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    assert urlsplit(worker.s3_endpoint_url).hostname == "minio"
    # The bucket service makes the bucket the storage URL names, on the same server.
    bucket = urlsplit(worker.storage_url).netloc
    [alias] = [k.removeprefix("MC_HOST_") for k in services["bucket"]["environment"]]
    host = urlsplit(services["bucket"]["environment"][f"MC_HOST_{alias}"])
    assert (host.username, host.password) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    assert (host.hostname, host.port) == ("minio", urlsplit(worker.s3_endpoint_url).port)
    assert services["bucket"]["command"][-1] == f"{alias}/{bucket}"


def test_image_holds_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in PACKAGES:
        assert f"COPY {package} {package}" in dockerfile
