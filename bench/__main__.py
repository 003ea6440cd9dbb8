"""`python -m bench run [--quick] [--only SCENARIO ...]`: run the scenarios, write the report;
`python -m bench work`: count the work of one operation of each kind (bench/work_count.py)."""

import argparse
import asyncio
import gc
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

import msgspec

from bench import report, work_count
from bench.config import FULL, QUICK
from bench.results import ScenarioResult
from bench.scenarios import Context, create_rate, events, large_import, read_path, small_imports

Scenario = Callable[[Context], Awaitable[ScenarioResult]]
SCENARIOS: dict[str, Scenario] = {
    "create": create_rate.run,
    "small-imports": small_imports.run,
    "large-import": large_import.run,
    "read": read_path.run,
    "events": events.run,
}
HERE = Path(__file__).resolve().parent


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the scenarios and write RESULTS.md and plots")
    run.add_argument("--quick", action="store_true", help="small counts, 1 run each (< 2 min)")
    run.add_argument(
        "--only",
        nargs="+",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"run only these: {', '.join(SCENARIOS)}",
    )
    run.add_argument("--runs", type=int, help="measured runs per side (default: 3, quick: 1)")
    run.add_argument(
        "--out",
        type=Path,
        default=HERE,
        help="where RESULTS.md, results.json and the plots go (default: bench/)",
    )
    run.add_argument(
        "--py-spy",
        action="store_true",
        help="record py-spy profiles of Kiln's processes during the first Kiln run of create,"
        " small imports and events, into OUT/profiles/ (speedscope JSON)",
    )
    run.add_argument(
        "--keep-workdir",
        action="store_true",
        help="keep the temporary directory (process logs) for inspection",
    )
    work = commands.add_parser(
        "work", help="count the work of one create, update and small import (WORK.md)"
    )
    work.add_argument("--count", type=int, default=200, help="operations per measurement")
    work.add_argument("--concurrency", type=int, default=32, help="the batched measurement's")
    work.add_argument("--out", type=Path, default=HERE, help="where WORK.md goes")
    work.add_argument("--keep-workdir", action="store_true", help="keep the process logs")
    again = commands.add_parser("report", help="re-render RESULTS.md and plots from results.json")
    again.add_argument("--out", type=Path, default=HERE, help="directory of results.json")
    return parser.parse_args(argv)


async def run_scenarios(args: argparse.Namespace, workdir: Path) -> list[ScenarioResult]:
    profile = QUICK if args.quick else FULL
    if args.runs:
        profile = msgspec.structs.replace(profile, runs=args.runs)
    results = []
    for name in args.only or list(SCENARIOS):
        ctx = Context(
            profile=profile,
            workdir=workdir / name,
            profiles=args.out / "profiles" if args.py_spy else None,
        )
        ctx.workdir.mkdir(parents=True)
        ctx.log(f"{name}: start ({profile.name} profile, {profile.runs} run(s) per side)")
        started = time.monotonic()
        try:
            async with asyncio.timeout(profile.scenario_timeout):
                result = await SCENARIOS[name](ctx)
        except Exception as exc:
            ctx.log(f"{name}: FAILED: {exc!r}")
            detail = "".join(traceback.format_exception(exc)[-3:])
            result = ScenarioResult(name=name, title=name, error=f"{exc!r}\n{detail}")
        result.seconds = time.monotonic() - started
        ctx.log(f"{name}: done in {result.seconds:.0f} s")
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.command == "report":
        report.rerender(args.out)
        return 0
    command = "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="kiln-bench-"))
    if args.command == "work":
        return count_work(args, workdir, command)
    started = time.time()
    try:
        machine = report.machine_info()
        # The harness times receipts and responses: keep the collector's full passes over
        # its long-lived objects (~50 ms each here) out of the measured runs, for both sides.
        gc.collect()
        gc.freeze()
        results = asyncio.run(run_scenarios(args, workdir))
    finally:
        if args.keep_workdir:
            print(f"[bench] process logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    run = report.Run(
        command=f".venv/bin/{command}",
        profile="quick" if args.quick else "full",
        started=time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(started)),
        seconds=time.time() - started,
        machine=machine,
        scenarios=results,
    )
    path = report.write(run, args.out)
    print(f"[bench] wrote {path} in {run.seconds:.0f} s", file=sys.stderr)
    return 1 if any(r.error for r in results) else 0


def count_work(args: argparse.Namespace, workdir: Path, command: str) -> int:
    def log(line: str) -> None:
        print(f"[bench] {line}", file=sys.stderr)

    try:
        works = asyncio.run(work_count.count_work(workdir, args.count, args.concurrency, log))
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    table = work_count.render(works, f".venv/bin/{command}")
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "WORK.md").write_text(f"# The work per operation\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
