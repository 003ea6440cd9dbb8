"""The scenarios of issue 5; each `run(ctx)` starts what it needs, measures floor and Kiln (and a
peer) alternately `ctx.profile.runs` times, stops everything it started and returns a result."""

import sys
import time
from pathlib import Path

import msgspec

from bench.config import Profile


class Context(msgspec.Struct, kw_only=True):
    profile: Profile
    workdir: Path  # the scenario's own temporary directory
    profiles: Path | None = None  # --py-spy: where py-spy profiles of Kiln processes go

    def profile_path(self, what: str) -> Path | None:
        """Where to write the py-spy profile `what` (None: not profiling)."""
        if self.profiles is None:
            return None
        self.profiles.mkdir(parents=True, exist_ok=True)
        return self.profiles / f"{what}.speedscope.json"

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
