"""The project's own dependency sets resolve at once in a new venv: pip's resolver once spent
over 15 minutes backtracking through boto3 releases against the botocore that aiobotocore
pins (bench/requirements.txt now takes boto3 through aiobotocore's `boto3` extra)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOLVE_SECONDS = 240  # a dry run takes about 30 s here, mostly downloading metadata


@pytest.mark.timeout(RESOLVE_SECONDS + 60)
def test_kiln_its_tests_and_the_bench_resolve_together_in_a_new_venv(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    started = time.monotonic()
    resolved = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--dry-run", "--quiet",
         "--disable-pip-version-check", "-e", f"{ROOT}[test]",
         "-r", str(ROOT / "bench" / "requirements.txt")],
        capture_output=True, text=True, timeout=RESOLVE_SECONDS,
    )  # fmt: skip
    took = time.monotonic() - started
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    print(f"\nresolved in {took:.0f} s")
