"""RESULTS.md, results.json and the plots (matplotlib, Agg) from a run's scenario results."""

import functools
import math
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from bench.results import Comparison, ScenarioResult
from bench.stats import Summary

SIDES = (("floor", "floor", "#8c8c8c"), ("kiln", "Kiln", "#d9541e"), ("peer", "peer", "#3b75af"))


class Run(msgspec.Struct, kw_only=True):
    command: str
    profile: str
    started: str
    seconds: float
    machine: dict[str, str]
    scenarios: list[ScenarioResult]


def _output(*argv: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (done.stdout.strip() or done.stderr.strip() or "unknown").splitlines()[0]


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    return "unknown"


def machine_info() -> dict[str, str]:
    root = Path(__file__).resolve().parent.parent
    commit = _output("git", "-C", str(root), "rev-parse", "--short", "HEAD")
    dirty = _output("git", "-C", str(root), "status", "--porcelain", "--untracked-files=no")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cores": str(os.cpu_count()),
        "memory": _memory(),
        "CPU": _cpu_model(),
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "PostgreSQL": _output(
            "psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"
        ),
        "RabbitMQ": _output("rabbitmqctl", "-q", "version"),
        "Kiln commit": commit
        + (" (with uncommitted changes)" if dirty != "unknown" and dirty else ""),
        "load average at start (1, 5, 15 min)": load,
    }


def _num(value: float) -> str:
    if value != value:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def _cell(summary: Summary | None, runs: int) -> str:
    if summary is None:
        return "–"
    if len(summary.runs) <= 1:
        return _num(summary.median)
    return f"{_num(summary.median)} ({_num(summary.min)}–{_num(summary.max)})"


def _ratio(comparison: Comparison) -> str:
    ratio = comparison.ratio
    if ratio is None or ratio != ratio:
        return "–"
    if comparison.kind == "throughput":
        return f"{100 * ratio:.0f} %"
    return f"{ratio:.2f}×"


def markdown(run: Run) -> str:
    m = run.machine
    lines = [
        "# Kiln benchmark results",
        "",
        f"Written by `{run.command}` ({run.profile} profile), started {run.started},"
        f" took {run.seconds / 60:.1f} min. Each figure is the median over the runs with"
        " (min–max); the floor of each scenario was measured in the same run, alternating"
        " with Kiln. Ratios are Kiln ÷ floor: for a throughput the share of the floor"
        " reached, for a latency how many times the floor's.",
        "",
    ]
    if run.profile == "quick":
        lines += [
            "> **Quick profile**: small counts and one run per side, so min = max = median;"
            " on a shared 2-core machine these figures move by tens of percent. For orientation"
            " only: the full run (`.venv/bin/python -m bench run`) is the measurement.",
            "",
        ]
    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in m.items()]
    lines += [
        "",
        "## Targets (issue 5)",
        "",
        "| scenario | target | measured | met |",
        "|---|---|---|---|",
    ]
    for scenario in run.scenarios:
        for t in scenario.targets:
            met = "–" if t.met is None else ("**met**" if t.met else "not met")
            lines.append(f"| {scenario.name} | {t.text} | {t.measured} | {met} |")
        if scenario.error:
            lines.append(f"| {scenario.name} | (scenario failed: see below) | – | not measured |")
    lines += ["", "![throughput](throughput.png)", "", "![latency](latency.png)", ""]
    for scenario in run.scenarios:
        lines += [f"## {scenario.title} (`{scenario.name}`, {scenario.seconds:.0f} s)", ""]
        if scenario.error:
            lines += ["**Failed:**", "", "```", scenario.error.strip(), "```", ""]
        if scenario.comparisons:
            lines += [
                "| metric | unit | floor | Kiln | Kiln ÷ floor | peer |",
                "|---|---|---|---|---|---|",
            ]
            for c in scenario.comparisons:
                peer = f"{_cell(c.peer, 0)} ({c.peer_name})" if c.peer is not None else "–"
                floor = _cell(c.floor, 0)
                metric = c.metric + (" ¹" if c.note else "")
                lines.append(
                    f"| {metric} | {c.unit} | {floor} | {_cell(c.kiln, 0)} | {_ratio(c)} | {peer} |"
                )
            notes = [c.note for c in scenario.comparisons if c.note]
            lines.append("")
            lines += [f"¹ {note}" for note in dict.fromkeys(notes)]
            if notes:
                lines.append("")
        lines += [f"- {note}" for note in scenario.notes]
        lines.append("")
    return "\n".join(lines)


def _side_summaries(comparison: Comparison) -> list[tuple[str, str, Summary]]:
    """(label, colour, summary) of each side measured."""
    found = []
    for side, label, colour in SIDES:
        summary: Summary | None = getattr(comparison, side)
        if summary is not None and summary.median == summary.median:
            name = comparison.peer_name if side == "peer" and comparison.peer_name else label
            found.append((name, colour, summary))
    return found


def _bars(ax: Any, comparison: Comparison) -> None:
    """One bar per side: the median, with min–max whiskers."""
    sides = _side_summaries(comparison)
    ax.bar(
        [name for name, _, _ in sides],
        [s.median for _, _, s in sides],
        yerr=[[s.median - s.min for _, _, s in sides], [s.max - s.median for _, _, s in sides]],
        color=[colour for _, colour, _ in sides],
        capsize=3,
    )
    ax.set_title(comparison.metric, fontsize=9)
    ax.set_ylabel(comparison.unit, fontsize=8)
    if comparison.limit is not None:
        ax.axhline(comparison.limit, color="#c00000", linestyle="--", linewidth=1, label="target")
        ax.legend(fontsize=7)


def _percentile_bars(ax: Any, name: str, comparisons: list[Comparison]) -> None:
    """Percentiles along x (p50, p99), one bar per side at each, min–max whiskers."""
    labels = [c.metric.removeprefix(name).strip() for c in comparisons]
    sides = [side_name for side_name, _, _ in _side_summaries(comparisons[0])]
    width = 0.8 / max(1, len(sides))
    for offset, (side_name, colour, _) in enumerate(_side_summaries(comparisons[0])):
        summaries = [
            dict((n, s) for n, _, s in _side_summaries(c)).get(side_name) for c in comparisons
        ]
        xs = [i + (offset - (len(sides) - 1) / 2) * width for i in range(len(comparisons))]
        medians = [s.median if s else 0.0 for s in summaries]
        ax.bar(
            xs,
            medians,
            width,
            yerr=[
                [s.median - s.min if s else 0.0 for s in summaries],
                [s.max - s.median if s else 0.0 for s in summaries],
            ],
            color=colour,
            capsize=2,
            label=side_name,
        )
    for index, comparison in enumerate(comparisons):
        if comparison.limit is not None:
            ax.hlines(comparison.limit, index - 0.45, index + 0.45, colors="#c00000",
                      linestyles="--", linewidth=1, label="target")  # fmt: skip
    ax.set_xticks(range(len(comparisons)), labels)
    ax.set_title(name, fontsize=9)
    ax.set_ylabel(comparisons[0].unit, fontsize=8)
    ax.legend(fontsize=7)


def _latency_groups(run: Run) -> dict[str, list[Comparison]]:
    """Latency comparisons grouped by what was measured: "create p50", "create p99" → "create"."""
    groups: dict[str, list[Comparison]] = {}
    for scenario in run.scenarios:
        for c in scenario.comparisons:
            if c.kind == "latency":
                base, _, last = c.metric.rpartition(" ")
                key = base if last.startswith("p") and last[1:].isdigit() else c.metric
                groups.setdefault(key, []).append(c)
    return groups


def _figure(
    panels: list[Callable[[Any], None]], columns: int, title: str, path: Path
) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        path.unlink(missing_ok=True)
        return None
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.3 * columns, 3.0 * rows), squeeze=False)
    for ax, draw in zip(axes.flat, panels, strict=False):
        draw(ax)
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plots(run: Run, out: Path) -> list[Path]:
    """throughput.png (throughputs, CPU per call, memory) and latency.png (percentiles)."""
    bars = [
        c
        for kind in ("throughput", "cost", "memory")
        for s in run.scenarios
        for c in s.comparisons
        if c.kind == kind
    ]
    suffix = f"({run.profile} run; medians, whiskers min–max)"
    written = [
        _figure(
            [functools.partial(_bars, comparison=c) for c in bars],
            4,
            f"Throughput, CPU per call and memory: floor vs Kiln {suffix}",
            out / "throughput.png",
        ),
        _figure(
            [
                functools.partial(_percentile_bars, name=n, comparisons=g)
                for n, g in _latency_groups(run).items()
            ],
            4,
            f"Latency percentiles: floor vs Kiln {suffix}",
            out / "latency.png",
        ),
    ]
    return [path for path in written if path is not None]


def write(run: Run, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_bytes(msgspec.json.format(msgspec.json.encode(run)))
    plots(run, out)
    path = out / "RESULTS.md"
    path.write_text(markdown(run))
    return path


def rerender(out: Path) -> Path:
    run = msgspec.json.decode((out / "results.json").read_bytes(), type=Run)
    plots(run, out)
    path = out / "RESULTS.md"
    path.write_text(markdown(run))
    return path
