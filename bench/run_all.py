"""Run every benchmark, print the report and write it to bench/results/.

``python -m bench`` is the full run (up to a million rows, about twenty
minutes); ``python -m bench --quick`` is sized for CI (under three minutes) and
exits non-zero when ours is not the fastest upserting loader at some size,
when concurrent paging is slower than sequential, or when a benchmark fails.
"""

import argparse
import os
import platform
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).with_name("results")
BUDGET = 150.0  # requests a second: above what 8 in flight reach at 50 ms
TIGHT_BUDGET = 50.0
LATENCY = 0.05


@dataclass(frozen=True)
class Plan:
    """The sizes of one kind of run."""

    name: str
    load_sizes: list[int]
    repeat_up_to: int
    extract_rows: int
    extract_modes: list[tuple[str, int, float]]
    memory_sizes: list[int]
    accounts: int
    rows_per_account: int = 500


SEQUENTIAL = ("sequential", 1, BUDGET)
CONCURRENT = ("concurrent", 8, BUDGET)
FULL = Plan(
    name="full",
    load_sizes=[1_000, 10_000, 100_000, 1_000_000],
    repeat_up_to=10_000,
    extract_rows=100_000,
    extract_modes=[SEQUENTIAL, CONCURRENT, ("concurrent, tight budget", 8, TIGHT_BUDGET)],
    memory_sizes=[100_000, 300_000, 1_000_000],
    accounts=200,
)
# Memory sizes start at the COPY chunk (50k rows), below which the peak is not linear.
QUICK = Plan(
    name="quick",
    load_sizes=[1_000, 10_000, 50_000],
    repeat_up_to=1_000,
    extract_rows=10_000,
    extract_modes=[SEQUENTIAL, CONCURRENT],
    memory_sizes=[50_000, 100_000, 200_000],
    accounts=20,
)


@dataclass
class Outcome:
    """What the run gathered: tables, goals, the gating goals, failures."""

    tables: list = field(default_factory=list)
    goals: list = field(default_factory=list)
    gates: list = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def add(self, table, goals: list, gate: int | None = None) -> None:
        """A section's table and goals; ``gate`` picks the goal that fails --quick."""
        self.tables.append(table)
        self.goals += goals
        if gate is not None:
            self.gates.append(goals[gate])

    def section(self, name: str, measure: Callable[[], object]) -> object | None:
        """Run one benchmark; a failure is reported and the others still run."""
        print(f"\n== {name}", flush=True)
        try:
            return measure()
        except Exception as exc:  # any failure of a benchmark is reported, not fatal
            traceback.print_exc()
            self.failures.append(f"{name}: {type(exc).__name__}: {exc}".replace("\n", " "))
            return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CI-sized run")
    plan = QUICK if parser.parse_args(argv).quick else FULL
    warnings.filterwarnings("ignore", module="dagster")
    warnings.filterwarnings("ignore", message=".*currently in (beta|preview).*")

    from bench.common import Stopwatch

    watch = Stopwatch()
    outcome = _measure(plan)
    text = _write(plan, outcome, watch.seconds)
    print("\n" + text)
    if outcome.failures:
        print("failed:", *outcome.failures, sep="\n  ", file=sys.stderr)

    return 1 if outcome.failures or not all(goal.met for goal in outcome.gates) else 0


def _measure(plan: Plan) -> Outcome:
    from bench import backfill, extract, figures, load, memory, shape
    from bench.common import synthetic_frame

    outcome = Outcome()
    largest = max(plan.load_sizes)
    shaped = outcome.section("transform", lambda: shape.run(largest))
    frames = {largest: shaped[1]} if shaped else {}
    shaped = shaped and shaped[0]  # the largest frame now lives in ``frames`` only

    def frame_for(rows: int):
        return frames.pop(rows) if rows in frames else synthetic_frame(rows)

    loaded = outcome.section(
        "load", lambda: load.run(plan.load_sizes, frame_for, plan.repeat_up_to)
    )
    if loaded:
        outcome.add(figures.load_table(loaded), figures.load_goals(loaded), gate=2)
        _plot(loaded, RESULTS / ("quick-load.png" if plan is QUICK else "load.png"))
    if shaped and loaded:
        outcome.add(figures.shape_table(shaped, loaded), figures.shape_goals(shaped, loaded))

    modes = plan.extract_modes
    paged = outcome.section("extract", lambda: extract.run(plan.extract_rows, LATENCY, modes))
    if paged:
        quick = plan is QUICK
        goals = figures.extract_goals(paged, quick)
        outcome.add(figures.extract_table(paged, LATENCY), goals, gate=0 if quick else None)

    peaks = outcome.section("memory", lambda: memory.run(plan.memory_sizes))
    if peaks:
        outcome.add(figures.memory_table(peaks), figures.memory_goals(peaks))

    synced = outcome.section(
        "many accounts", lambda: backfill.run(plan.accounts, plan.rows_per_account)
    )
    if synced:
        outcome.add(figures.backfill_table(synced), figures.backfill_goals(synced))
    outcome.tables.sort(key=lambda table: table.title)

    return outcome


def _plot(results, path: Path) -> None:
    from bench.report import plot_load

    panels: dict[str, dict] = {"into an empty table": {}, "no-change re-sync": {}}
    for result in results:
        panels["into an empty table"].setdefault(result.loader, []).append(
            (result.rows, result.empty_seconds)
        )
        resync = result.resync_seconds
        phase = panels["no-change re-sync"]
        key = result.loader if resync is not None else f"{result.loader}, empty table"
        phase.setdefault(key, []).append((result.rows, resync or result.empty_seconds))
    plot_load(panels, path)


def _write(plan: Plan, outcome: Outcome, elapsed: float) -> str:
    from bench.report import Goal, markdown

    goals = outcome.goals + [
        Goal(failure.split(":")[0], "runs", failure, False) for failure in outcome.failures
    ]
    preamble = [
        f"{plan.name} run, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed / 60:.1f} minutes; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, {_server_version()}.",
        "One run on a shared, noisy machine: read the ratios, not the seconds.",
    ]
    text = markdown(f"bis-assets benchmarks ({plan.name})", preamble, goals, outcome.tables)
    RESULTS.mkdir(exist_ok=True)
    name = "quick.md" if plan is QUICK else "latest.md"
    (RESULTS / name).write_text(text, encoding="utf-8")

    return text


def _server_version() -> str:
    import psycopg2

    from bench.common import admin_url

    try:
        connection = psycopg2.connect(admin_url())
    except psycopg2.Error:
        return "PostgreSQL unreachable"
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            return f"PostgreSQL {cursor.fetchone()[0].split()[0]}"
    finally:
        connection.close()
