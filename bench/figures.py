"""Each benchmark's results as a report table and the goals of the brief."""

from bench.backfill import BackfillResult
from bench.common import rows_label
from bench.extract import ExtractResult
from bench.load import LoadResult
from bench.memory import MIB, MemoryResult
from bench.report import Goal, Table, ratio, seconds
from bench.shape import ShapeResult

OURS = "ours"
RAW = "raw COPY (to_csv, PK)"
LOAD_RATIO_GOAL = 1.25
EXTRACT_RATIO_GOAL = 6.0
SHAPE_SHARE_GOAL = 1 / 3
PEAK_GOAL_BYTES = 1.5 * 2**30
ACCOUNT_OVERHEAD_GOAL = 0.2


def load_table(results: list[LoadResult]) -> Table:
    table = Table(
        "1. Load: upsert a frame of the table's shape",
        ["rows", "loader", "empty table s", "x raw", "no-change re-sync s", "x raw",
         "re-sync inserted / updated", "rows locked"],
        notes=[
            "raw COPY is the floor: frame.to_csv, then one COPY into an empty table of the "
            "same shape, primary key included (the same DDL as ours); it cannot upsert.",
            "execute_values (1000 rows a page) and to_sql (SQLAlchemy insertmanyvalues) use "
            "our conflict rule: ON CONFLICT DO UPDATE ... WHERE ... IS DISTINCT FROM.",
            "Re-sync: the same rows with a later __synced_at. Inserted / updated are "
            "pg_stat_user_tables n_tup_ins / n_tup_upd deltas; rows locked counts rows whose "
            "xmax the re-sync set (ON CONFLICT locks, and so writes, every conflicting row).",
            "Sizes up to 10k rows: best of three. Each step starts after a CHECKPOINT; the "
            "table is vacuumed and analyzed (untimed) between the load and the re-sync.",
        ],
    )
    for rows in sorted({result.rows for result in results}):
        raw = _of(results, rows, RAW)
        for result in (r for r in results if r.rows == rows):
            resync = "-" if result.resync_seconds is None else seconds(result.resync_seconds)
            table.rows.append([
                rows_label(rows),
                result.loader,
                seconds(result.empty_seconds),
                ratio(result.empty_seconds / raw.empty_seconds),
                resync,
                "-" if result.resync_seconds is None
                else ratio(result.resync_seconds / raw.empty_seconds),
                "-" if result.inserted is None else f"{result.inserted} / {result.updated}",
                "-" if result.locked is None else f"{result.locked:,}",
            ])

    return table


def load_goals(results: list[LoadResult]) -> list[Goal]:
    largest = max(result.rows for result in results)
    ours, raw = _of(results, largest, OURS), _of(results, largest, RAW)
    slower = [
        f"{rows_label(r.rows)} {phase}"
        for r in results if r.upserts and r.loader != OURS
        for phase, theirs, mine in (
            ("empty", r.empty_seconds, _of(results, r.rows, OURS).empty_seconds),
            ("re-sync", r.resync_seconds, _of(results, r.rows, OURS).resync_seconds),
        )
        if theirs <= mine
    ]
    rewritten = [r for r in results if r.loader == OURS and (r.inserted or r.updated)]
    size = rows_label(largest)

    return [
        Goal(f"load into an empty table, {size} rows", f"ours <= {LOAD_RATIO_GOAL}x raw COPY",
             ratio(ours.empty_seconds / raw.empty_seconds),
             ours.empty_seconds <= LOAD_RATIO_GOAL * raw.empty_seconds),
        Goal(f"no-change re-sync, {size} rows", f"ours <= {LOAD_RATIO_GOAL}x raw COPY",
             ratio(ours.resync_seconds / raw.empty_seconds),
             ours.resync_seconds <= LOAD_RATIO_GOAL * raw.empty_seconds),
        Goal("fastest upserting loader, every size", "both phases",
             "yes" if not slower else "beaten at " + ", ".join(slower), not slower),
        Goal("no-change re-sync writes nothing (ours)", "0 inserted, 0 updated",
             "0 / 0 at every size" if not rewritten else f"{len(rewritten)} sizes wrote rows",
             not rewritten),
    ]


def _of(results: list[LoadResult], rows: int, loader: str) -> LoadResult:
    return next(r for r in results if r.rows == rows and r.loader == loader)


def extract_table(results: list[ExtractResult], latency: float) -> Table:
    sequential = results[0]
    table = Table(
        "2. Extract: paging through our API server",
        ["mode", "in flight", "budget req/s", "seconds", "rows/s", "x sequential",
         "requests", "busiest second"],
        notes=[
            f"{sequential.rows:,} synthetic variants, 250 a page, {latency * 1000:.0f} ms of "
            "server latency a request; the server runs in a process of its own.",
            "Busiest second: the most requests that started within any one second, from the "
            "server's request log. Pages and rows were asserted to come out in page order.",
            "With a budget of B requests a second the ratio cannot exceed B x the time of one "
            "sequential request (about 0.056 s): the speed-up is measured with a budget above "
            "what 8 in flight reach; a tight-budget row shows the pacer holding it.",
        ],
    )
    for result in results:
        table.rows.append([
            result.mode, str(result.max_in_flight), f"{result.budget:g}",
            seconds(result.seconds), f"{result.rows_per_second:,.0f}",
            ratio(result.rows_per_second / sequential.rows_per_second),
            str(result.requests), str(result.busiest_second),
        ])

    return table


def extract_goals(results: list[ExtractResult], quick: bool) -> list[Goal]:
    sequential, concurrent = results[0], results[1]
    speedup = concurrent.rows_per_second / sequential.rows_per_second
    over = [r.mode for r in results if r.busiest_second > r.budget]
    if quick:
        speed = Goal("concurrent paging faster than sequential", "> 1x", ratio(speedup),
                     speedup > 1)
    else:
        speed = Goal("concurrent (8 in flight) over sequential paging",
                     f">= {EXTRACT_RATIO_GOAL:g}x", ratio(speedup), speedup >= EXTRACT_RATIO_GOAL)

    return [
        speed,
        Goal("request rate within the budget", "busiest second <= budget",
             "within, every mode" if not over else "over in " + ", ".join(over), not over),
    ]


def shape_table(shape: ShapeResult, load: list[LoadResult]) -> Table:
    ours = _of(load, shape.rows, OURS)

    return Table(
        "3. Transform: shape_rows",
        ["rows", "shape_rows s", "cpu s", "ours load s (empty table)", "share of the load"],
        [[rows_label(shape.rows), seconds(shape.seconds), seconds(shape.cpu_seconds),
          seconds(ours.empty_seconds), ratio(shape.seconds / ours.empty_seconds)]],
        ["Rows already in memory (a list of dicts as the client yields them); best of three "
         "runs, against the single empty-table load of the load table. "
         "`python -m bench.shape --rows N --profile` shows where the time goes."],
    )


def shape_goals(shape: ShapeResult, load: list[LoadResult]) -> list[Goal]:
    share = shape.seconds / _of(load, shape.rows, OURS).empty_seconds

    return [Goal(f"shape_rows, {rows_label(shape.rows)} rows", "<= 1/3 of the load's time",
                 f"{share:.2f} of it", share <= SHAPE_SHARE_GOAL)]


def memory_table(results: list[MemoryResult]) -> Table:
    table = Table(
        "4. Memory: peak RSS of one account's sync",
        ["rows", "peak RSS MiB", "after imports MiB", "growth MiB",
         "MiB per 100k rows since the size before", "seconds"],
        notes=["Each size in a fresh process: iter_pages -> shape_rows -> ensure_table + load "
               "(with the vanished-row marking, as the IO manager loads), up to the commit. "
               "Peak = VmHWM of that process; the API server is another process."],
    )
    previous = None
    for result in results:
        slope = "-" if previous is None else f"{_slope(previous, result):.0f}"
        table.rows.append([
            rows_label(result.rows), f"{result.peak_bytes / MIB:.0f}",
            f"{result.baseline_bytes / MIB:.0f}", f"{result.growth_bytes / MIB:.0f}",
            slope, seconds(result.seconds),
        ])
        previous = result

    return table


def memory_goals(results: list[MemoryResult]) -> list[Goal]:
    largest = results[-1]
    slopes = [_slope(a, b) for a, b in zip(results, results[1:], strict=False)]
    # Fixed costs (imports aside) make the first slope the steeper; what must not
    # happen is a later slope well above an earlier one: growth faster than linear.
    linear = len(slopes) < 2 or min(slopes) > 0 and slopes[-1] <= 1.5 * slopes[0]

    return [
        Goal(f"peak RSS, {rows_label(largest.rows)} rows", "<= 1.5 GiB",
             f"{largest.peak_bytes / 2**30:.2f} GiB", largest.peak_bytes <= PEAK_GOAL_BYTES),
        Goal("memory grows linearly, no faster", "last slope <= 1.5x the first",
             " vs ".join(f"{slope:.0f}" for slope in slopes) + " MiB per 100k rows", linear),
    ]


def _slope(smaller: MemoryResult, larger: MemoryResult) -> float:
    growth = (larger.peak_bytes - smaller.peak_bytes) / MIB

    return growth / ((larger.rows - smaller.rows) / 100_000)


def backfill_table(results: list[BackfillResult]) -> Table:
    bulk = results[0]
    table = Table(
        "5. Many accounts through Dagster",
        ["mode", "runs", "seconds", "per account beyond its rows' cost"],
        notes=["Per account beyond its rows: (seconds - the one-account run's) / accounts. "
               "materialize() in process with the product's asset, checks, resources and IO "
               "manager, an ephemeral instance, a fresh table for each mode."],
    )
    for result in results:
        extra = "-" if result is bulk else seconds(_overhead(result, bulk))
        table.rows.append([result.mode, str(result.runs), seconds(result.seconds), extra])

    return table


def backfill_goals(results: list[BackfillResult]) -> list[Goal]:
    bulk, single = results[0], results[1]
    overhead = _overhead(single, bulk)

    return [Goal(f"single-run backfill, {single.accounts} accounts",
                 f"<= {ACCOUNT_OVERHEAD_GOAL} s per account beyond its rows",
                 f"{overhead:.3f} s", overhead <= ACCOUNT_OVERHEAD_GOAL)]


def _overhead(result: BackfillResult, bulk: BackfillResult) -> float:
    return (result.seconds - bulk.seconds) / result.accounts
