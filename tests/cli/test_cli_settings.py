"""Settings come from KILN_* variables and flags; a bad one stops start-up naming it."""

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from kiln import processes
from kiln.cli import main
from kiln.flags import OPTIONS
from kiln.settings import Settings, SettingsError, build, env_name, flag_name
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
    assert processes.gateway_settings(given).max_streams_per_subject == 3


def test_every_setting_is_offered_with_help() -> None:
    """Each field is an option of at least one server command, with its --help text."""
    assert [option.setting for option in OPTIONS] == list(Settings.__struct_fields__)
    for option in OPTIONS:
        assert option.commands and option.commands <= {"dev", "gateway", "worker"}, option
        assert option.help.strip(), option


def start(*args: str, **env: str) -> tuple[int, list[str]]:
    """`kiln ARGS` that stops at start-up: its exit code and its stderr lines."""
    result = CliRunner().invoke(main, list(args), env={"KILN_TOKEN_SECRET": None, **env})
    return result.exit_code, result.stderr.splitlines()


def test_a_setting_is_named_as_it_was_given() -> None:
    flag = start("dev", "--http-port", "x", KILN_HTTP_PORT="8080")
    variable = start("dev", KILN_HTTP_PORT="nope")

    assert flag == (2, ["Error: bad setting --http-port: expected an integer, got 'x'"])
    assert variable == (2, ["Error: bad setting KILN_HTTP_PORT: expected an integer, got 'nope'"])


def test_a_setting_not_given_is_named_both_ways() -> None:
    code, lines = start("gateway", KILN_BROKER_URL="amqp://127.0.0.1:1/")

    assert (code, lines) == (
        2,
        [
            "Error: bad setting --token-secret (KILN_TOKEN_SECRET): the gateway needs a token"
            " secret or --jwks-url (KILN_JWKS_URL) to authenticate callers"
        ],
    )


def test_gateway_needs_a_broker() -> None:
    code, lines = start("gateway", "--broker-url", "memory://")

    assert (code, lines) == (
        2,
        ["Error: bad setting --broker-url: kiln gateway/worker need amqp://…"],
    )


def test_a_malformed_cluster_url_is_refused_in_one_line() -> None:
    code, lines = start("worker", "--broker-url", "amqp://guest:guest@node1:5672,:5672/")

    assert (code, lines) == (
        2,
        [
            "Error: bad setting --broker-url: every node needs a host:"
            " amqp://user:password@host:port,host:port/vhost"
        ],
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (
            ["--import-allowed-hosts", "not a host!"],
            "--import-allowed-hosts: 'not a host!': host 'not a host!' is malformed",
        ),
        (
            ["--http-host", "not a host!"],
            "--http-host: 'not a host!' is not an IP address or a host name",
        ),
        (["--log-format", "xml"], "--log-format: expected one of console, json, got 'xml'"),
        (
            ["--database-url", "mysql://db"],
            "--database-url: must start with one of sqlite:///, postgresql://, postgres://",
        ),
        (
            ["--s3-endpoint-url", "minio:9000"],
            "--s3-endpoint-url: 'minio:9000' is not an http:// or https:// URL with a host",
        ),
        (
            ["--jwks-url", "https://"],
            "--jwks-url: 'https://' is not an http:// or https:// URL with a host",
        ),
        (
            ["--worker-lease-seconds", "0"],
            "--worker-lease-seconds: expected a number > 0.0, got '0'",
        ),
    ],
)
def test_every_kind_of_setting_is_checked_at_start_up(args: list[str], error: str) -> None:
    assert start("dev", *args) == (2, [f"Error: bad setting {error}"])


def test_a_worker_takes_no_gateway_flag() -> None:
    result = CliRunner().invoke(main, ["worker", "--http-port", "8080"])

    assert result.exit_code == 2 and "No such option '--http-port'" in result.stderr


def listed_flags(command: str) -> set[str]:
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0
    return set(re.findall(r"^  (--[a-z0-9-]+)", result.output, re.M)) - {"--help"}


def flags_of(command: str) -> set[str]:
    return {"--" + o.setting.replace("_", "-") for o in OPTIONS if command in o.commands}


def test_each_server_command_lists_the_options_it_uses() -> None:
    gateway, worker, dev = listed_flags("gateway"), listed_flags("worker"), listed_flags("dev")

    assert (gateway, worker, dev) == (flags_of("gateway"), flags_of("worker"), flags_of("dev"))
    assert {"--http-port", "--max-body-bytes", "--token-secret"} <= gateway - worker
    assert {"--worker-prefetch", "--s3-part-size", "--storage-url"} <= worker - gateway
    assert dev == (gateway | worker) - {"--worker-http-port"}  # kiln dev has no side port


def test_the_import_limits_reach_the_workers_fetch_policy() -> None:
    defaults = processes.worker_config(build({})).fetch_policy()
    given = processes.worker_config(
        build({"import_deadline_seconds": "90", "import_min_rate_bytes": "0"})
    ).fetch_policy()

    assert (defaults.deadline, defaults.min_rate) == (6 * 3600, 64 * 1024)
    assert (given.deadline, given.min_rate) == (90, 0)


def test_the_gateway_knows_whether_file_sources_have_an_import_root() -> None:
    secret = {"token_secret": "s" * 32}

    assert not processes.gateway_settings(build(secret)).import_root_configured
    assert processes.gateway_settings(
        build({**secret, "import_root": "/srv"})
    ).import_root_configured


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


def test_the_readme_table_lists_every_setting_in_order() -> None:
    """README's Configuration table: one row per setting, its variable and flag, as declared."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| `(KILN_[A-Z0-9_]+)` \| `(--[a-z0-9-]+)` \|", readme, re.M)

    assert rows == [(env_name(o.setting), flag_name(o.setting)) for o in OPTIONS]
