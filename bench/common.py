"""What the benchmarks share: scratch databases, synthetic frames, a stopwatch."""

import itertools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn

from bis_assets.api_server import iter_synthetic_rows
from bis_assets.transform import shape_rows

ADMIN_URL_ENV = "BIS_BENCH_ADMIN_URL"
ADMIN_URL = os.environ.get(ADMIN_URL_ENV, "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE_PREFIX = "bis_bench_"
SYNCED_AT = datetime(2026, 1, 1, tzinfo=UTC)

_database_numbers = itertools.count()


@dataclass(frozen=True)
class Database:
    """A scratch database on the benchmark's PostgreSQL server."""

    name: str

    @property
    def dsn(self) -> str:
        return make_dsn(ADMIN_URL, dbname=self.name)

    @property
    def sqlalchemy_url(self) -> str:
        parts = parse_dsn(ADMIN_URL)
        host = parts.get("host", "127.0.0.1")
        port = parts.get("port", "5432")

        return f"postgresql+psycopg2://{parts.get('user', 'postgres')}@{host}:{port}/{self.name}"


@contextmanager
def scratch_database(label: str) -> Iterator[Database]:
    """A new empty database ``bis_bench_<label>_…``, dropped when the block ends."""
    database = Database(f"{DATABASE_PREFIX}{label}_{os.getpid()}_{next(_database_numbers)}")
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database.name)))
    try:
        yield database
    finally:
        _admin(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database.name)
            )
        )


def _admin(statement: sql.Composable) -> None:
    connection = psycopg2.connect(ADMIN_URL)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
    finally:
        connection.close()


def synthetic_frame(rows: int, account_id: str = "bench", seed: int = 0) -> pd.DataFrame:
    """The table-shaped frame of ``rows`` synthetic variants of one account."""
    shaped = shape_rows(
        iter_synthetic_rows(rows, seed), account_id, f"src-{account_id}", SYNCED_AT
    )

    return shaped.frame


class Stopwatch:
    """Seconds since it started; ``lap()`` also restarts it."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def lap(self) -> float:
        now = time.perf_counter()
        seconds, self.started = now - self.started, now

        return seconds


def rows_label(rows: int) -> str:
    """1000 -> "1k", 1000000 -> "1M"."""
    for size, suffix in ((1_000_000, "M"), (1_000, "k")):
        if rows >= size and rows % (size // 10) == 0:
            return f"{rows / size:g}{suffix}"

    return str(rows)
