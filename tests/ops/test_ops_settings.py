"""The operability settings: object storage, the worker's side port, the shutdown grace; each
malformed one stops start-up naming it."""

import contextlib
import errno
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from ops.opskit import settings
from structlog.testing import capture_logs

from kiln import processes
from kiln.ports import DEFAULT_SIDE_PORT
from kiln.settings import S3_MAX_PART, S3_MIN_PART, SettingsError, build
from worker.blobs_s3 import MAX_PART, MIN_PART

MiB = 1 << 20


def test_defaults() -> None:
    defaults = build({})
    assert defaults.worker_http_port is None  # 9090, or a free port if 9090 is taken
    assert defaults.shutdown_grace_seconds == 0
    assert defaults.startup_timeout_seconds == 60
    assert (defaults.s3_region, defaults.s3_addressing_style) == ("us-east-1", "path")
    assert defaults.s3_part_size == 8 * MiB
    assert defaults.storage.startswith("file:///") and defaults.storage.endswith("/blobs")


def test_the_part_size_limits_are_the_s3_stores() -> None:
    assert (S3_MIN_PART, S3_MAX_PART) == (MIN_PART, MAX_PART)


def test_s3_settings_reach_the_store() -> None:
    given = build(
        {
            "storage_url": "s3://bucket/kiln/blobs",
            "s3_endpoint_url": "http://127.0.0.1:9000",
            "s3_region": "eu-west-1",
            "s3_access_key_id": "id",
            "s3_secret_access_key": "secret",
            "s3_addressing_style": "virtual",
            "s3_part_size": str(16 * MiB),
            "worker_http_port": "0",
        }
    )
    s3 = processes.s3_settings(given)
    assert (s3.endpoint_url, s3.region, s3.addressing_style) == (
        "http://127.0.0.1:9000",
        "eu-west-1",
        "virtual",
    )
    assert (s3.access_key_id, s3.secret_access_key, s3.part_size) == ("id", "secret", 16 * MiB)
    assert given.worker_http_port == 0


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"storage_url": "gs://bucket"}, "KILN_STORAGE_URL"),
        ({"storage_url": "s3:///prefix"}, "KILN_STORAGE_URL"),
        ({"storage_url": "file://relative/blobs"}, "KILN_STORAGE_URL"),
        ({"broker_url": "amqp://guest:guest@h1:5672,/"}, "KILN_BROKER_URL"),
        ({"broker_url": "amqp://guest:guest@h1,h2:port/"}, "KILN_BROKER_URL"),
        ({"broker_url": "amqp:///"}, "KILN_BROKER_URL"),
        ({"broker_url": "amqp://h1/?reconnect_interval=soon"}, "KILN_BROKER_URL"),
        ({"broker_quorum_size": "0"}, "KILN_BROKER_QUORUM_SIZE"),
        ({"s3_part_size": str(4 * MiB)}, "KILN_S3_PART_SIZE"),
        ({"s3_part_size": str(6 << 30)}, "KILN_S3_PART_SIZE"),
        ({"s3_addressing_style": "dns"}, "KILN_S3_ADDRESSING_STYLE"),
        ({"worker_http_port": "-1"}, "KILN_WORKER_HTTP_PORT"),
        ({"worker_http_port": "70000"}, "KILN_WORKER_HTTP_PORT"),
        ({"shutdown_grace_seconds": "-1"}, "KILN_SHUTDOWN_GRACE_SECONDS"),
        ({"startup_timeout_seconds": "-1"}, "KILN_STARTUP_TIMEOUT_SECONDS"),
    ],
)
def test_bad_setting_is_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        build(values)


@contextlib.contextmanager
def listening(port: int = 0) -> Iterator[int]:
    """Something listening on 127.0.0.1:`port` (0: a free port); its port."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            taken.bind(("127.0.0.1", port))
            taken.listen()
        except OSError as exc:  # already taken by something else: as good
            assert exc.errno == errno.EADDRINUSE
        yield port or taken.getsockname()[1]


async def test_a_taken_side_port_stops_the_worker_before_it_starts(tmp_path: Path) -> None:
    with listening() as port:
        config = settings(tmp_path, worker_http_port=str(port))
        with pytest.raises(SettingsError) as refused:
            async with processes.worker_process(config):
                pass

    assert str(refused.value) == f"KILN_WORKER_HTTP_PORT: 127.0.0.1:{port} is already in use"
    assert not (tmp_path / "data").exists()  # no database opened, no worker started


@pytest.mark.parametrize("process", [processes.dev_process, processes.gateway_process])
async def test_a_taken_gateway_port_stops_start_up_before_anything(
    tmp_path: Path, process: object
) -> None:
    with listening() as port:
        config = settings(tmp_path, http_port=str(port))
        with pytest.raises(SettingsError) as refused:
            async with process(config):  # type: ignore[operator]
                pass

    assert str(refused.value) == f"KILN_HTTP_PORT: 127.0.0.1:{port} is already in use"
    assert not (tmp_path / "data").exists()


async def test_a_worker_whose_default_side_port_is_taken_serves_on_a_free_one(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    with listening(DEFAULT_SIDE_PORT):  # as the first worker of the host would
        config = settings(tmp_path, worker_http_port=None)
        with capture_logs() as logs:
            async with processes.worker_process(config):
                [moved] = [e for e in logs if e["event"] == "worker side port 9090 in use"]
                async with http.get(f"{moved['url']}/readyz") as response:
                    assert response.status == 200

    assert moved["log_level"] == "warning"
    assert moved["serving"] == "/metrics, /healthz, /readyz"
    assert moved["url"].startswith("http://127.0.0.1:") and not moved["url"].endswith(":9090")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"import_root": "/no/such/dir"}, "KILN_IMPORT_ROOT: '/no/such/dir' does not exist"),
        ({"disk_source_dir": __file__}, f"KILN_DISK_SOURCE_DIR: '{__file__}' is not a directory"),
    ],
)
async def test_a_worker_needs_its_directories(
    tmp_path: Path, values: dict[str, str], named: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        async with processes.worker_process(settings(tmp_path, **values)):
            pass

    assert str(refused.value) == named


async def test_a_data_dir_that_is_a_file_stops_start_up(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    with pytest.raises(SettingsError, match=r"^KILN_DATA_DIR: .* is not a directory$"):
        async with processes.gateway_process(settings(tmp_path)):
            pass
