"""The product packages type-check under mypy --strict, as pyproject.toml configures it."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_packages_type_check_strictly() -> None:
    mypy = Path(sys.executable).with_name("mypy")

    ran = subprocess.run([mypy, "--no-incremental"], cwd=ROOT, capture_output=True, text=True)

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.startswith("Success: no issues found"), ran.stdout
