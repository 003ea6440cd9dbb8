"""The packages' layers, as import-linter checks them from pyproject.toml: a package imports
only from the layers below it, and gateway and worker (store and bus) never import each other."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_layers_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")

    ran = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "1 kept, 0 broken" in ran.stdout
