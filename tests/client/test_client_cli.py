"""Every `kiln images|operations|access` command against a live `kiln dev`, through click."""

import functools
import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import unused_port
from click.testing import CliRunner, Result

from kiln.cli import main
from kiln.client import KilnClient

Kiln = Callable[..., Result]
EVERYONE = "compute.images.user:system:allAuthenticatedUsers"
BOB = "viewer:userAccount:bob"


@pytest.fixture
def kiln(kiln_dev: str, admin_token: str, folder: str) -> Kiln:
    """`kiln ARGS…` with KILN_URL, KILN_TOKEN and KILN_FOLDER set; checks the exit code (0
    unless told)."""

    def run(*args: str, code: int = 0) -> Result:
        env = {"KILN_URL": kiln_dev, "KILN_FOLDER": folder, "KILN_TOKEN": admin_token}
        result = CliRunner().invoke(main, list(args), env=env)
        assert result.exit_code == code, (result.stdout, result.stderr, result.exception)
        return result

    return run


def api(base: str, path: str, token: str) -> bytes:
    request = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return bytes(response.read())


def parsed(result: Result) -> Any:
    return json.loads(result.stdout)


def create(kiln: Kiln, name: str, uri: str, *extra: str) -> dict[str, Any]:
    args = ["images", "create", "--name", name, "--uri", uri, "--wait", "--json", *extra]
    done = parsed(kiln(*args))
    assert done["done"] and done["response"]["status"] == "READY", done
    return dict(done["response"])


def test_images_create_get_list_latest(
    kiln: Kiln, kiln_dev: str, admin_token: str, image_url: str
) -> None:
    image = create(kiln, "alpha", image_url, "--family", "fam-a", "--label", "os=linux")
    assert image["labels"] == {"os": "linux"}
    create(kiln, "beta", image_url, "--family", "fam-a")
    shown = kiln("images", "get", image["id"])
    assert "alpha" in shown.stdout and "READY" in shown.stdout and "os=linux" in shown.stdout
    exact = kiln("images", "get", image["id"], "--json").stdout.strip()
    assert exact.encode() == api(kiln_dev, f"/compute/v1/images/{image['id']}", admin_token)
    table = kiln("images", "list").stdout
    assert image["id"] in table and "beta" in table and "2 images" in table
    assert [i["name"] for i in parsed(kiln("images", "list", "--json"))["images"]] == [
        "alpha",
        "beta",
    ]
    page = parsed(kiln("images", "list", "--json", "--page-size", "1", "--order-by", "name desc"))
    assert [i["name"] for i in page["images"]] == ["beta"] and page["nextPageToken"]
    chosen = parsed(kiln("images", "list", "--json", "--filter", 'name = "alpha"'))
    assert [i["id"] for i in chosen["images"]] == [image["id"]]
    assert parsed(kiln("images", "latest", "--family", "fam-a", "--json"))["name"] == "beta"


def test_images_update_and_delete(kiln: Kiln, image_url: str) -> None:
    image = create(kiln, "changing", image_url, "--label", "a=b")
    done = parsed(kiln("images", "update", image["id"], "--description", "hi", "--wait", "--json"))
    assert (done["response"]["description"], done["response"]["labels"]) == ("hi", {"a": "b"})
    cleared = parsed(kiln("images", "update", image["id"], "--clear-labels", "--json"))
    assert "labels" not in cleared["response"] and cleared["response"]["description"] == "hi"
    assert "nothing to update" in kiln("images", "update", image["id"], code=2).stderr
    assert "Delete image" in kiln("images", "delete", image["id"], "--wait").stdout
    missing = kiln("images", "get", image["id"], code=1)
    assert missing.stderr.startswith(f"error: NOT_FOUND: image {image['id']} not found (request ")
    assert missing.stdout == ""


def test_operations_get_wait_list(kiln: Kiln, image_url: str) -> None:
    started = parsed(kiln("images", "create", "--name", "op", "--uri", image_url, "--json"))
    done = parsed(kiln("operations", "wait", started["id"], "--json"))
    assert done["id"] == started["id"] and done["done"] and "error" not in done
    assert "Create image" in kiln("operations", "get", started["id"]).stdout
    assert parsed(kiln("operations", "get", started["id"], "--json")) == done
    image_id = started["metadata"]["imageId"]
    listed = parsed(kiln("operations", "list", image_id, "--json"))
    assert [op["id"] for op in listed["operations"]] == [started["id"]]


def test_operations_cancel(kiln: Kiln, image_server: str) -> None:
    uri = f"{image_server}/slow/disk.qcow2"
    started = parsed(kiln("images", "create", "--name", "slow", "--uri", uri, "--json"))
    timed_out = kiln("operations", "wait", started["id"], "--timeout", "0.2", code=1)
    assert "error: DEADLINE_EXCEEDED" in timed_out.stderr
    cancel = kiln("operations", "cancel", started["id"], "--wait", "--json", code=1)
    assert parsed(cancel)["error"]["code"] == 1
    waited = kiln("operations", "wait", started["id"], code=1)
    again = kiln("operations", "cancel", started["id"], code=1)  # done: returned unchanged
    for ended in (cancel, waited, again):  # one rule: the exit status is the operation's outcome
        assert ended.stderr.startswith(f"error: CANCELLED: operation {started['id']}: ")
    assert "CANCELLED" in waited.stdout


def test_access_list_set_add_remove(kiln: Kiln, image_url: str) -> None:
    image_id = create(kiln, "shared", image_url)["id"]
    added = kiln("access", "add", image_id, EVERYONE, BOB, "--wait")
    assert f"ADD {EVERYONE}" in added.stdout and f"ADD {BOB}" in added.stdout
    table = kiln("access", "list", image_id).stdout
    assert "allAuthenticatedUsers" in table and "2 access bindings" in table
    removed = parsed(kiln("access", "remove", image_id, BOB, "--json"))
    assert removed["response"]["effectiveDeltas"][0]["action"] == "REMOVE"
    assert parsed(kiln("access", "list", image_id, "--json"))["accessBindings"] == [
        {
            "roleId": "compute.images.user",
            "subject": {"id": "allAuthenticatedUsers", "type": "system"},
        }
    ]
    kiln("access", "set", image_id, BOB, "--json")
    assert [
        b["subject"]["id"]
        for b in parsed(kiln("access", "list", image_id, "--json"))["accessBindings"]
    ] == ["bob"]
    kiln("access", "set", image_id)
    assert parsed(kiln("access", "list", image_id, "--json")) == {}


def test_failures_exit_non_zero(
    kiln: Kiln, image_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = functools.partial(KilnClient, backoff=0.001, max_backoff=0.01)
    monkeypatch.setattr("kiln.commands.common.KilnClient", fast)
    bad_source = kiln(
        "images",
        "create",
        "--name",
        "nope",
        "--uri",
        f"{image_server}/missing.qcow2",
        "--wait",
        code=1,
    )
    assert "error: NOT_FOUND: operation" in bad_source.stderr
    no_source = kiln("images", "create", "--name", "nosource", code=1)
    assert "error: INVALID_ARGUMENT: source: exactly one of" in no_source.stderr
    assert (
        "expected ROLE:SUBJECT_TYPE:SUBJECT_ID"
        in kiln("access", "add", "img1", "bob", code=2).stderr
    )
    down = kiln("images", "get", "img1", "--url", f"http://127.0.0.1:{unused_port()}", code=1)
    assert down.stderr.startswith("error: UNAVAILABLE: cannot reach Kiln at http://127.0.0.1:")
