"""Load benchmark: each loader into an empty table, then a re-sync that changes nothing.

Every loader gets its own table of the product's shape (primary key included)
in one scratch database. Before each timed step the server checkpoints, so
no loader pays for another's dirty pages; after the empty-table load the
table is vacuumed and analyzed (untimed), as a day-old table would be. The
re-sync frame is the same rows with a later ``__synced_at``: a sync that
found nothing new. Its writes are read from ``pg_stat_user_tables``.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pandas as pd
from psycopg2 import sql

from bench.common import Stopwatch, autocommit, scratch_database
from bench.loaders import LOADERS, Loader, Target
from bis_assets.columns import SYNCED_AT_COLUMN
from bis_assets.warehouse import TableName, ensure_table

REPEATS = 3  # sizes up to ``repeat_up_to`` are timed this often, the best kept


@dataclass(frozen=True)
class LoadResult:
    """One loader at one size."""

    loader: str
    rows: int
    upserts: bool
    empty_seconds: float
    resync_seconds: float | None = None
    inserted: int | None = None  # by the re-sync, from pg_stat_user_tables
    updated: int | None = None
    locked: int | None = None  # rows whose xmax the re-sync set (row locks)


def run(
    sizes: list[int], frame_for: Callable[[int], pd.DataFrame], repeat_up_to: int = 10_000
) -> list[LoadResult]:
    """Every loader at every size; progress goes to stdout."""
    results = []
    for rows in sizes:
        frame = frame_for(rows)
        later = frame[SYNCED_AT_COLUMN] + timedelta(days=1)
        resync = frame.assign(**{SYNCED_AT_COLUMN: later})
        with scratch_database("load") as database:
            for number, loader in enumerate(LOADERS):
                table = TableName(schema=f"bench_{number}", table="notifications")
                target = Target(database.dsn, database.sqlalchemy_url, table)
                try:
                    repeats = REPEATS if rows <= repeat_up_to else 1
                    result = _measure(loader, target, frame, resync, repeats)
                finally:
                    target.close()
                print(f"  load {rows:>9,} rows  {_progress(result)}", flush=True)
                results.append(result)

    return results


def _measure(
    loader: Loader, target: Target, frame: pd.DataFrame, resync: pd.DataFrame, repeats: int
) -> LoadResult:
    empty = []
    for _ in range(repeats):
        _recreate(target)
        _checkpoint()
        watch = Stopwatch()
        loader.run(target, frame)
        empty.append(watch.seconds)
    if not loader.upserts:
        return LoadResult(loader.name, len(frame), False, min(empty))

    _vacuum(target)
    before = _counters(target)
    resyncs = []
    for _ in range(repeats):
        _checkpoint()
        watch = Stopwatch()
        loader.run(target, resync)
        resyncs.append(watch.seconds)
    after = _counters(target)

    return LoadResult(
        loader.name,
        len(frame),
        True,
        min(empty),
        min(resyncs),
        inserted=after[0] - before[0],
        updated=after[1] - before[1],
        locked=_locked_rows(target),
    )


def _recreate(target: Target) -> None:
    connection = target.connection
    with connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target.table.identifier))
    ensure_table(connection, target.table)


def _checkpoint() -> None:
    autocommit("CHECKPOINT")


def _vacuum(target: Target) -> None:
    statement = sql.SQL("VACUUM (ANALYZE) {}").format(target.table.identifier)
    autocommit(statement, target.dsn)


def _counters(target: Target) -> tuple[int, int]:
    """n_tup_ins and n_tup_upd of the table, with every loader's session flushed.

    A backend flushes its pending statistics before it reports ready for the
    next query, once asked to; so after these calls the view is complete.
    """
    flush = "SELECT pg_stat_force_next_flush()"
    if target._engine is not None:
        with target.engine.connect() as connection:
            connection.exec_driver_sql(flush)
            connection.commit()
    connection = target.connection
    with connection, connection.cursor() as cursor:
        cursor.execute(flush)
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT n_tup_ins, n_tup_upd FROM pg_stat_user_tables WHERE relid = %s::regclass",
            (target.table.identifier.as_string(cursor),),
        )
        return cursor.fetchone()


def _locked_rows(target: Target) -> int:
    connection = target.connection
    with connection, connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE xmax::text <> '0'").format(
                target.table.identifier
            )
        )
        return cursor.fetchone()[0]


def _progress(result: LoadResult) -> str:
    text = f"{result.loader:<22} empty {result.empty_seconds:8.3f} s"
    if result.resync_seconds is not None:
        text += (
            f"  re-sync {result.resync_seconds:8.3f} s  ins {result.inserted} "
            f"upd {result.updated} locked {result.locked}"
        )

    return text
