"""`kiln import`: killed and resumed without duplicates, stopped by Ctrl-C and resumed, CSV
manifests, bad lines, the report, and a state file that belongs to another manifest."""

import asyncio
import functools
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import unused_port
from click.testing import CliRunner

from kiln.cli import main
from kiln.client import KilnClient

KILN = Path(sys.executable).parent / "kiln"
LINES = 1000


def write_jsonl(path: Path, folder: str, uris: list[str]) -> list[str]:
    names = [f"img-{number:04d}" for number in range(len(uris))]
    rows = [{"folderId": folder, "name": n, "uri": u} for n, u in zip(names, uris, strict=True)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return names


def state_lines(manifest: Path) -> list[dict[str, Any]]:
    state = manifest.with_name(manifest.name + ".state.jsonl")
    text = state.read_text() if state.exists() else ""
    return [json.loads(line) for line in text.splitlines()[1:] if line.endswith("}")]


async def start_import(
    manifest: Path, url: str, token: str, *options: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(KILN),
        "import",
        str(manifest),
        "--url",
        url,
        "--token",
        token,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def wait_for_state(manifest: Path, status: str, count: int) -> None:
    for _ in range(1000):
        if sum(1 for r in state_lines(manifest) if r["status"] == status) >= count:
            return
        await asyncio.sleep(0.01)  # watching another process's state file
    raise AssertionError(f"no {count} {status!r} lines in the state file within 10 s")


async def names_in_folder(client: KilnClient, folder: str, names: list[str]) -> list[str]:
    """Every image of `names` the folder holds, asked for 40 names at a time by filter."""
    found: list[str] = []
    for start in range(0, len(names), 40):
        chunk = ", ".join(f'"{name}"' for name in names[start : start + 40])
        page = await client.list_images(folder, filter=f"name IN ({chunk})", page_size=1000)
        found.extend(image.name for image in page.images)
    return found


@pytest.mark.parametrize("kiln_dev", ["dev"], indirect=True)  # one deployment: 1,000 imports
async def test_killed_import_resumes_without_duplicates(
    kiln_dev: str, admin_token: str, client: KilnClient, folder: str, image_url: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "images.jsonl"
    names = write_jsonl(manifest, folder, [image_url] * LINES)
    first = await start_import(manifest, kiln_dev, admin_token, "--concurrency", "16")
    await wait_for_state(manifest, "ready", 30)
    first.kill()
    await first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert sum(1 for r in state_lines(manifest) if r["status"] == "ready") < LINES

    report_path = tmp_path / "report.json"
    resumed = await start_import(
        manifest, kiln_dev, admin_token, "--report", str(report_path), "--json"
    )
    stdout, stderr = await resumed.communicate()
    assert resumed.returncode == 0, stderr.decode()
    report = json.loads(report_path.read_text())
    assert json.loads(stdout) == report
    assert (report["total"], report["ready"], report["failed"]) == (LINES, LINES, 0)
    assert [line["status"] for line in report["lines"]] == ["ready"] * LINES
    image_ids = {line["imageId"] for line in report["lines"]}

    found = await names_in_folder(client, folder, names)
    assert sorted(found) == names  # each name exactly once
    listed = [image async for image in client.iter_images(folder, page_size=1000)]
    assert len(listed) == LINES and {image.id for image in listed} == image_ids

    again = await start_import(manifest, kiln_dev, admin_token)
    stdout, _ = await again.communicate()
    assert again.returncode == 0 and re.search(rf"ready\s+{LINES}\b", stdout.decode())
    assert len((await client.list_images(folder, page_size=1000)).images) == LINES


async def test_ctrl_c_stops_submitting_and_the_rerun_reattaches(
    kiln_dev: str,
    admin_token: str,
    client: KilnClient,
    folder: str,
    image_server: str,
    tmp_path: Path,
) -> None:
    slow, fast = f"{image_server}/slow/disk.qcow2", f"{image_server}/disk.qcow2"
    manifest = tmp_path / "images.jsonl"
    names = write_jsonl(manifest, folder, [slow] * 4 + [fast] * 16)
    process = await start_import(manifest, kiln_dev, admin_token, "--concurrency", "4")
    await wait_for_state(manifest, "creating", 4)
    process.send_signal(signal.SIGINT)  # stop submitting; the 4 slow lines are in flight
    await asyncio.sleep(0.3)
    process.send_signal(signal.SIGINT)  # stop waiting for them too
    stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
    assert process.returncode == 130, stderr.decode()
    assert "stopping: no new lines" in stderr.decode()
    assert f"resume with: kiln import {manifest}" in stderr.decode()
    assert "not finished  20" in stdout.decode()
    assert [r["status"] for r in state_lines(manifest)] == ["creating"] * 4

    rerun = await start_import(manifest, kiln_dev, admin_token, "--concurrency", "4")
    stdout, stderr = await asyncio.wait_for(rerun.communicate(), 20)
    assert rerun.returncode == 0, stderr.decode()
    assert sorted(await names_in_folder(client, folder, names)) == names


def test_csv_manifest_bad_lines_report_and_state_mismatch(
    kiln_dev: str, admin_token: str, folder: str, image_url: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "images.csv"
    manifest.write_text(f"name,uri\ncsv-a,{image_url}\ncsv-b,{image_url}\nBad Name,{image_url}\n")
    report_path = tmp_path / "report.json"
    args = [
        "import",
        str(manifest),
        "--url",
        kiln_dev,
        "--folder",
        folder,
        "--report",
        str(report_path),
    ]
    env = {"KILN_TOKEN": admin_token}
    first = CliRunner().invoke(main, args, env=env)
    assert first.exit_code == 1, (first.stdout, first.stderr, first.exception)
    assert "failed        1" in first.stdout and "INVALID_ARGUMENT" in first.stdout
    report = json.loads(report_path.read_text())
    assert [(line["line"], line["name"], line["status"]) for line in report["lines"]] == [
        (2, "csv-a", "ready"),
        (3, "csv-b", "ready"),
        (4, "Bad Name", "failed"),
    ]
    assert report["lines"][2]["error"]["code"] == "INVALID_ARGUMENT"
    assert all(line["imageId"].startswith("img") for line in report["lines"][:2])

    again = CliRunner().invoke(main, args, env=env)
    assert again.exit_code == 1 and json.loads(report_path.read_text()) == report

    other_folder = CliRunner().invoke(main, [*args[:5], folder + "-x"], env=env)
    assert other_folder.exit_code == 2
    assert "belongs to a different manifest content or --folder" in other_folder.stderr
    no_folder = CliRunner().invoke(main, ["import", str(manifest), "--url", kiln_dev], env=env)
    assert no_folder.exit_code == 2 and "needs --folder" in no_folder.stderr


def test_unreachable_server_stops_intake_and_keeps_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = functools.partial(KilnClient, retries=1, backoff=0.001, max_backoff=0.01)
    monkeypatch.setattr("kiln.commands.common.KilnClient", fast)
    manifest = tmp_path / "images.jsonl"
    write_jsonl(manifest, "f1", ["http://127.0.0.1/x.qcow2"] * 50)
    report_path = tmp_path / "report.json"
    args = [
        "import",
        str(manifest),
        "--url",
        f"http://127.0.0.1:{unused_port()}",
        "--concurrency",
        "2",
        "--report",
        str(report_path),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, (result.stdout, result.stderr, result.exception)
    assert "stopped submitting: UNAVAILABLE: cannot reach Kiln at http" in result.stderr
    assert f"resume with: kiln import {manifest}" in result.stderr
    report = json.loads(report_path.read_text())
    assert report["unfinished"] == 50
    assert {line["status"] for line in report["lines"]} == {"pending"}
    assert state_lines(manifest) == []
