"""The four ways of putting a frame into the table that the load benchmark compares.

Each loader takes a ``Target`` (one table on a scratch database) and a frame
of the table's shape. ``raw_copy`` is the floor: it only serializes the frame
with ``to_csv`` and COPYs it into an empty table of the same shape, primary
key included; it cannot upsert. The other three upsert with the same
``ON CONFLICT ... DO UPDATE ... WHERE ... IS DISTINCT FROM`` rule as ours.
"""

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import psycopg2
import sqlalchemy as sa
from psycopg2 import sql
from psycopg2.extras import execute_values
from sqlalchemy.dialects.postgresql import insert as pg_insert

from bis_assets.columns import DELETED_AT, KEY_COLUMNS, SYNCED_AT_COLUMN, column_names
from bis_assets.warehouse import TableName, connect, ensure_table, load

VALUES_PAGE_ROWS = 1000  # execute_values' and SQLAlchemy's insertmanyvalues batch
TO_SQL_CHUNK_ROWS = 10_000


@dataclass
class Target:
    """One table on a scratch database, with the connections the loaders need."""

    dsn: str
    sqlalchemy_url: str
    table: TableName
    _connection: psycopg2.extensions.connection | None = None
    _engine: sa.Engine | None = None
    _closers: list = field(default_factory=list)

    @property
    def connection(self) -> psycopg2.extensions.connection:
        """A UTC session, as the IO manager opens one."""
        if self._connection is None:
            opened = connect(self.dsn)
            self._connection = opened.__enter__()
            self._closers.append(lambda: opened.__exit__(None, None, None))

        return self._connection

    @property
    def engine(self) -> sa.Engine:
        """One pooled connection, so statistics read through it are its own."""
        if self._engine is None:
            self._engine = sa.create_engine(self.sqlalchemy_url, pool_size=1, max_overflow=0)
            self._closers.append(self._engine.dispose)

        return self._engine

    def close(self) -> None:
        for close in reversed(self._closers):
            close()
        self._closers.clear()
        self._connection = self._engine = None


def ours(target: Target, frame: pd.DataFrame) -> None:
    """The product: ``ensure_table`` and ``load``, as the IO manager calls them."""
    ensure_table(target.connection, target.table)
    load(target.connection, target.table, frame)


def raw_copy(target: Target, frame: pd.DataFrame) -> None:
    """The floor: ``to_csv`` then one COPY into the empty table."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv)").format(
        target.table.identifier, _names(column_names())
    )
    with target.connection, target.connection.cursor() as cursor:
        cursor.copy_expert(statement.as_string(cursor), buffer)


def execute_values_upsert(target: Target, frame: pd.DataFrame) -> None:
    """``psycopg2.extras.execute_values`` with our conflict rule, 1000 rows a page."""
    records = frame.astype(object).where(frame.notna(), None)
    statement = sql.SQL("INSERT INTO {} AS current ({}) VALUES %s {}").format(
        target.table.identifier, _names(column_names()), _on_conflict_sql()
    )
    with target.connection, target.connection.cursor() as cursor:
        execute_values(
            cursor,
            statement.as_string(cursor),
            records.itertuples(index=False, name=None),
            page_size=VALUES_PAGE_ROWS,
        )


def to_sql_upsert(target: Target, frame: pd.DataFrame) -> None:
    """``DataFrame.to_sql`` with a ``method`` that upserts through SQLAlchemy."""
    table = sa.Table(
        target.table.table,
        sa.MetaData(),
        schema=target.table.schema,
        autoload_with=target.engine,
    )
    frame.to_sql(
        target.table.table,
        target.engine,
        schema=target.table.schema,
        if_exists="append",
        index=False,
        chunksize=TO_SQL_CHUNK_ROWS,
        method=_sqlalchemy_upsert(table),
    )


def _sqlalchemy_upsert(table: sa.Table) -> Callable:
    updated = _updated_names()
    compared = [name for name in updated if name != SYNCED_AT_COLUMN]

    def upsert(pandas_table, connection, keys, data_iter) -> int:
        rows = [dict(zip(keys, row, strict=True)) for row in data_iter]
        statement = pg_insert(table)
        statement = statement.on_conflict_do_update(
            index_elements=list(KEY_COLUMNS),
            set_={name: statement.excluded[name] for name in updated},
            where=sa.tuple_(*(table.c[name] for name in compared)).is_distinct_from(
                sa.tuple_(*(statement.excluded[name] for name in compared))
            ),
        )

        return connection.execute(statement, rows).rowcount

    return upsert


def _on_conflict_sql() -> sql.Composed:
    updated = _updated_names()
    compared = [name for name in updated if name != SYNCED_AT_COLUMN]

    def prefixed(prefix: str, names: list[str]) -> sql.Composed:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(prefix), sql.Identifier(name))
            for name in names
        )

    return sql.SQL(
        "ON CONFLICT ({}) DO UPDATE SET ({}) = ROW({}) WHERE ({}) IS DISTINCT FROM ({})"
    ).format(
        _names(KEY_COLUMNS),
        _names(updated),
        prefixed("excluded", updated),
        prefixed("current", compared),
        prefixed("excluded", compared),
    )


def _updated_names() -> list[str]:
    names = column_names() + [DELETED_AT.name]

    return [name for name in names if name not in KEY_COLUMNS]


def _names(names) -> sql.Composed:
    return sql.SQL(", ").join(map(sql.Identifier, names))


@dataclass(frozen=True)
class Loader:
    """A named way to load, and whether it can upsert at all."""

    name: str
    run: Callable[[Target, pd.DataFrame], None]
    upserts: bool = True


LOADERS = (
    Loader("raw COPY (to_csv, PK)", raw_copy, upserts=False),
    Loader("ours", ours),
    Loader("execute_values", execute_values_upsert),
    Loader("to_sql + ON CONFLICT", to_sql_upsert),
)
