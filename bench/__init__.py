"""Kiln's benchmark suite: each scenario measures its floor and Kiln in the same run (issue 5).

Run it with `.venv/bin/python -m bench run [--quick] [--only SCENARIO ...]` (bench/README.md).
"""
