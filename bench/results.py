"""What a scenario hands the report: comparisons (floor vs Kiln, sometimes a peer) and targets."""

from typing import Literal

import msgspec

from bench.stats import Summary, summarize

# throughput: higher is better; latency, memory and cost (CPU time per call): lower is better
Kind = Literal["throughput", "latency", "memory", "cost"]


class Comparison(msgspec.Struct, kw_only=True):
    """One figure for the floor and for Kiln (and a peer), each summarised over the runs."""

    metric: str
    unit: str
    better: Literal["higher", "lower"]
    kind: Kind
    kiln: Summary
    floor: Summary | None = None
    peer: Summary | None = None
    peer_name: str = ""
    note: str = ""
    limit: float | None = None  # a target's bound on Kiln's figure, drawn on the plots

    @property
    def ratio(self) -> float | None:
        """Kiln's median over the floor's (for a throughput, the share of the floor reached)."""
        if self.floor is None or not self.floor.median:
            return None
        return self.kiln.median / self.floor.median


def compare(
    metric: str,
    unit: str,
    kind: Kind,
    kiln: list[float],
    floor: list[float] | None = None,
    peer: list[float] | None = None,
    peer_name: str = "",
    note: str = "",
    limit: float | None = None,
) -> Comparison:
    return Comparison(
        metric=metric,
        unit=unit,
        better="higher" if kind == "throughput" else "lower",
        kind=kind,
        kiln=summarize(kiln),
        floor=summarize(floor) if floor is not None else None,
        peer=summarize(peer) if peer is not None else None,
        peer_name=peer_name,
        note=note,
        limit=limit,
    )


class Target(msgspec.Struct, kw_only=True):
    text: str  # the wording
    met: bool | None  # None: not measured in this run
    measured: str  # the figures it was judged on


def target(text: str, met: bool | None, measured: str) -> Target:
    return Target(text=text, met=met, measured=measured)


class ScenarioResult(msgspec.Struct, kw_only=True):
    name: str
    title: str
    comparisons: list[Comparison] = []
    targets: list[Target] = []
    notes: list[str] = []
    error: str = ""
    seconds: float = 0.0
