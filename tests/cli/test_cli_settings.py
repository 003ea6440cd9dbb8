"""Settings come from KILN_* variables and flags; a bad one stops start-up naming it."""

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
