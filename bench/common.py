"""What the benchmarks share: scratch databases, synthetic frames, a stopwatch."""

import atexit
import functools
import itertools
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import make_dsn, parse_dsn
from sqlalchemy.engine import URL

from bis_assets.api_server import iter_synthetic_rows
from bis_assets.embedded import start_embedded
from bis_assets.transform import shape_rows

ADMIN_URL_ENV = "BIS_BENCH_ADMIN_URL"
MACHINE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "bis_bench_"
SYNCED_AT = datetime(2026, 1, 1, tzinfo=UTC)

_database_numbers = itertools.count()


@dataclass(frozen=True)
class Database:
    """A scratch database on the benchmark's PostgreSQL server."""

    name: str

    @property
    def dsn(self) -> str:
        return make_dsn(admin_url(), dbname=self.name)

    @property
    def sqlalchemy_url(self) -> str:
        parts = parse_dsn(admin_url())
        host = parts.get("host", "127.0.0.1")
        socket = host.startswith("/")  # an embedded server listens on a socket only
        url = URL.create(
            "postgresql+psycopg2",
            username=parts.get("user"),
            password=parts.get("password"),
            host=None if socket else host,
            port=None if socket else int(parts.get("port", 5432)),
            database=self.name,
            query={"host": host} if socket else {},
        )

        return url.render_as_string(hide_password=False)


@functools.cache
def admin_url() -> str:
    """``$BIS_BENCH_ADMIN_URL``, else the machine's server, else an embedded one."""
    if configured := os.environ.get(ADMIN_URL_ENV):
        return configured
    try:
        psycopg2.connect(MACHINE_URL, connect_timeout=2).close()
        return MACHINE_URL
    except psycopg2.OperationalError:
        pass

    folder = Path(tempfile.mkdtemp(prefix="bis-bench-pg-"))
    server = start_embedded(folder)
    atexit.register(_remove_embedded, server, folder)
    print(f"no PostgreSQL answers at {MACHINE_URL}: an embedded one runs in {folder}")

    return server.url("postgres")


def _remove_embedded(server, folder: Path) -> None:
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def scratch_database(label: str) -> Iterator[Database]:
    """A new empty database ``bis_bench_<label>_…``, dropped when the block ends."""
    database = Database(f"{DATABASE_PREFIX}{label}_{os.getpid()}_{next(_database_numbers)}")
    autocommit(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database.name)))
    try:
        yield database
    finally:
        autocommit(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database.name)
            )
        )


def autocommit(statement: sql.Composable | str, dsn: str | None = None) -> None:
    """Run one statement outside a transaction, on ``dsn`` or the admin database."""
    connection = psycopg2.connect(dsn or admin_url())
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
