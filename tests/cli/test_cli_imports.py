"""`kiln --help` and the client commands start without the server: neither its packages
(gateway, worker, store, bus) nor their drivers are imported, so they start in a fraction of
the time. Each case runs in a fresh interpreter under `-X importtime`, which lists every
module imported."""

import os
import subprocess
import sys

import pytest
from aiohttp.test_utils import unused_port

from kiln.commands import CLIENT_COMMANDS, load

SERVER = {
    "asyncpg",
    "aio_pika",
    "aiormq",
    "aiobotocore",
    "botocore",
    "oslo_utils",
    "uvloop",
    "gateway",
    "worker",
    "store",
    "bus",
}
SECRET = {"KILN_TOKEN_SECRET": "s" * 32}  # for `kiln token issue`


def imported(*args: str, code: str = "from kiln.cli import main; main()") -> tuple[int, set[str]]:
    """`kiln ARGS` (or other `code`) run to its end: its exit code, and every module it
    imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("KILN_")}, **SECRET},
    )
    lines = result.stderr.splitlines()
    modules = {line.rpartition("|")[2].strip() for line in lines if line.startswith("import time")}
    return result.returncode, modules


def server_modules(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.partition(".")[0] in SERVER)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["dev", "--help"],
        ["worker", "--help"],
        ["images", "--help"],
        ["token", "issue", "--subject", "bob"],
    ],
)
def test_help_and_tokens_import_no_server_module(args: list[str]) -> None:
    code, modules = imported(*args)

    assert code == 0
    assert "kiln.cli" in modules
    assert server_modules(modules) == []


def test_a_client_command_imports_the_client_and_no_server_module() -> None:
    closed = f"http://127.0.0.1:{unused_port()}"
    code, modules = imported("images", "list", "--folder", "f1", "--url", closed)

    assert code == 1  # it ran: the client tried the URL
    assert {"kiln.client", "kiln.commands.render", "aiohttp"} <= modules
    assert server_modules(modules) == []


def test_the_settings_import_no_server_module() -> None:
    code, modules = imported(code="import kiln.settings")

    assert code == 0 and "kiln.settings" in modules
    assert server_modules(modules) == []


@pytest.mark.parametrize("name", sorted(CLIENT_COMMANDS))
def test_kiln_help_lists_each_client_command_as_the_command_itself_does(name: str) -> None:
    assert load(name).get_short_help_str(limit=1000) == CLIENT_COMMANDS[name][1]
