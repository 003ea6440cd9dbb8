"""Percentiles of one run, and the median / min / max of a figure over runs."""

import statistics
from collections.abc import Sequence

import msgspec


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of `values`; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


class Summary(msgspec.Struct, frozen=True, kw_only=True):
    """One figure measured once per run."""

    median: float
    min: float
    max: float
    runs: list[float]


def summarize(values: Sequence[float]) -> Summary:
    finite = [v for v in values if v == v]  # NaN-free
    if not finite:
        return Summary(median=float("nan"), min=float("nan"), max=float("nan"), runs=list(values))
    return Summary(
        median=statistics.median(finite), min=min(finite), max=max(finite), runs=list(values)
    )
