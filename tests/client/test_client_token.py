"""Without --token or KILN_TOKEN a client command sends the admin token `kiln dev` wrote in its
data directory (KILN_DATA_DIR, default ./.kiln); with none there, a 401 says where to get one."""

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kiln.cli import main


def kiln(*args: str, **env: str | None) -> Result:
    return CliRunner().invoke(main, list(args), env={"KILN_TOKEN": None, **env})


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_admin_token_of_dot_kiln_is_sent(
    in_tmp: Path, kiln_dev: str, admin_token: str, folder: str
) -> None:
    (in_tmp / ".kiln").mkdir()
    (in_tmp / ".kiln" / "admin.token").write_text(admin_token + "\n")

    listed = kiln("images", "list", "--folder", folder, "--url", kiln_dev, KILN_DATA_DIR=None)

    assert listed.exit_code == 0, listed.stderr
    assert "0 images" in listed.stdout


def test_kiln_data_dir_names_where_the_token_is(
    in_tmp: Path, kiln_dev: str, admin_token: str, folder: str
) -> None:
    (in_tmp / "elsewhere").mkdir()
    (in_tmp / "elsewhere" / "admin.token").write_text(admin_token)

    listed = kiln(
        "images", "list", "--folder", folder, "--url", kiln_dev, KILN_DATA_DIR="elsewhere"
    )

    assert listed.exit_code == 0, listed.stderr


def test_without_a_token_a_401_says_where_to_get_one(in_tmp: Path, kiln_dev: str) -> None:
    refused = kiln("images", "list", "--folder", "f1", "--url", kiln_dev, KILN_DATA_DIR=None)

    assert refused.exit_code == 1
    error, hint = refused.stderr.splitlines()
    assert error.startswith("error: UNAUTHENTICATED: ")
    assert hint.startswith("hint: no token given, and no .kiln/admin.token to read")
    assert "kiln token issue --subject SUBJECT" in hint and "KILN_TOKEN" in hint


def test_a_refused_token_from_the_data_dir_is_named(in_tmp: Path, kiln_dev: str) -> None:
    (in_tmp / ".kiln").mkdir()
    (in_tmp / ".kiln" / "admin.token").write_text("not-a-token-of-this-server")

    refused = kiln("images", "list", "--folder", "f1", "--url", kiln_dev, KILN_DATA_DIR=None)

    assert refused.exit_code == 1
    error, hint = refused.stderr.splitlines()
    assert error.startswith("error: UNAUTHENTICATED: ")
    assert (
        hint == f"hint: {kiln_dev} refused the token read from .kiln/admin.token; give its own"
        " with --token or KILN_TOKEN"
    )
