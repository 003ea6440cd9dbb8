"""Settings come from KILN_* variables and flags; a bad one stops start-up naming it."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kiln import runtime
from kiln.cli import OPTIONS, main
from kiln.settings import Settings, SettingsError, build
from support import auth


def test_defaults() -> None:
    settings = build({})
    assert (settings.http_host, settings.http_port) == ("127.0.0.1", 8080)
    assert settings.database.startswith("sqlite:///") and settings.database.endswith("kiln.db")
    assert settings.blob_root == Path(".kiln").resolve() / "blobs"


def test_values_are_coerced_from_text() -> None:
    settings = build(
        {"http_port": "9000", "import_allowed_hosts": "127.0.0.1, 10.0.0.0/8", "data_dir": "/x"}
    )
    assert settings.http_port == 9000
    assert settings.import_allowed_hosts == ("127.0.0.1", "10.0.0.0/8")
    assert settings.data_dir == Path("/x")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"http_port": "eighty"}, "KILN_HTTP_PORT"),
        ({"http_port": "70000"}, "KILN_HTTP_PORT"),
        ({"worker_prefetch": "0"}, "KILN_WORKER_PREFETCH"),
        ({"worker_fetches": "0"}, "KILN_WORKER_FETCHES"),
        ({"log_format": "xml"}, "KILN_LOG_FORMAT"),
        ({"database_url": "mysql://x"}, "KILN_DATABASE_URL"),
        ({"broker_url": "kafka://x"}, "KILN_BROKER_URL"),
        ({"max_streams_per_subject": "0"}, "KILN_MAX_STREAMS_PER_SUBJECT"),
        ({"http_header_timeout_seconds": "0"}, "KILN_HTTP_HEADER_TIMEOUT_SECONDS"),
        ({"import_deadline_seconds": "0"}, "KILN_IMPORT_DEADLINE_SECONDS"),
        ({"import_min_rate_bytes": "-1"}, "KILN_IMPORT_MIN_RATE_BYTES"),
    ],
)
def test_bad_setting_is_named(values: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        build(values)


def test_stream_limit_reaches_the_gateway() -> None:
    given = build({"max_streams_per_subject": "3", **auth.SETTINGS})
    assert runtime.gateway_settings(given).max_streams_per_subject == 3


def test_every_setting_is_a_flag() -> None:
    assert {name for name, _ in OPTIONS} == set(Settings.__struct_fields__)


def test_bad_variable_stops_start_up() -> None:
    result = CliRunner().invoke(main, ["dev"], env={"KILN_HTTP_PORT": "nope"})
    assert result.exit_code == 2
    assert "KILN_HTTP_PORT" in result.output


def test_gateway_needs_a_broker() -> None:
    result = CliRunner().invoke(main, ["gateway"], env={"KILN_BROKER_URL": "memory://"})
    assert result.exit_code == 2
    assert "KILN_BROKER_URL" in result.output


def test_help_lists_every_variable_flag() -> None:
    result = CliRunner().invoke(main, ["dev", "--help"])
    assert result.exit_code == 0
    for name, _ in OPTIONS:
        assert "--" + name.replace("_", "-") in result.output


def test_the_import_limits_reach_the_workers_fetch_policy() -> None:
    defaults = runtime.worker_config(build({})).fetch_policy()
    given = runtime.worker_config(
        build({"import_deadline_seconds": "90", "import_min_rate_bytes": "0"})
    ).fetch_policy()

    assert (defaults.deadline, defaults.min_rate) == (6 * 3600, 64 * 1024)
    assert (given.deadline, given.min_rate) == (90, 0)


def test_the_gateway_knows_whether_file_sources_have_an_import_root() -> None:
    secret = {"token_secret": "s" * 32}

    assert not runtime.gateway_settings(build(secret)).import_root_configured
    assert runtime.gateway_settings(build({**secret, "import_root": "/srv"})).import_root_configured


def test_allowed_hosts_may_name_a_port() -> None:
    entries = "mirror.internal, 10.0.0.0/8, fd00::/8, 127.0.0.1:9000, [::1]:8443, files.example:443"
    settings = build({"import_allowed_hosts": entries})

    assert settings.import_allowed_hosts == tuple(entries.replace(" ", "").split(","))


@pytest.mark.parametrize(
    "entry",
    [
        "10.0.0.0/33",
        "mirror.internal:0",
        "mirror.internal:70000",
        "[::1:8080",
        "*.example",
        "files..example",
        "user@mirror",
        "[mirror]:80",
        "mirror:http",
    ],
)
def test_a_malformed_allowed_host_stops_start_up_naming_it(entry: str) -> None:
    with pytest.raises(SettingsError, match=f"^KILN_IMPORT_ALLOWED_HOSTS: '{re.escape(entry)}'"):
        build({"import_allowed_hosts": f"mirror.internal,{entry}"})
