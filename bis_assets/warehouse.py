"""Load frames of the notifications table into PostgreSQL, and read them back.

Plain psycopg2, no Dagster. A load is one transaction: COPY into a temporary
staging table, one ``INSERT ... ON CONFLICT`` that rewrites only rows whose
values changed, and the marking of rows a complete sync no longer returned.
Identifiers are quoted by ``psycopg2.sql``; values are always bound.
"""

import io
import logging
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import psycopg2
from psycopg2 import sql
from psycopg2.extensions import parse_dsn

from bis_assets.columns import (
    ACCOUNT_COLUMN,
    DELETED_AT,
    FRAME_COLUMNS,
    KEY_COLUMNS,
    SYNC_KEY_COLUMN,
    SYNCED_AT_COLUMN,
    TABLE_COLUMNS,
    Column,
    column_names,
)
from bis_assets.errors import WarehouseError

DEFAULT_SCHEMA = "back_in_stock"
DEFAULT_TABLE = "notifications"
COPY_CHUNK_ROWS = 50_000  # about 50 MiB of Python strings at a time
STAGING_TABLE = "bis_staging"

# COPY's text format: backslash escapes, \N for NULL. Escaping the four
# characters below keeps every other character byte for byte.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
_COPY_SPECIALS = ("\\", "\n", "\r", "\t")
_COPY_NULL = "\\N"
_LOCK_NAMESPACE = zlib.crc32(b"bis_assets") - 2**31

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableName:
    """Where the notifications live."""

    schema: str = DEFAULT_SCHEMA
    table: str = DEFAULT_TABLE

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class LoadCounts:
    """What one load did to the table, in all or for one account."""

    staged: int
    inserted: int
    updated: int
    marked_deleted: int

    @property
    def unchanged(self) -> int:
        return self.staged - self.inserted - self.updated


@dataclass(frozen=True)
class LoadResult:
    """What one load did, in all and per account."""

    by_account: dict[str, LoadCounts]

    @property
    def total(self) -> LoadCounts:
        counts = self.by_account.values()

        return LoadCounts(
            staged=sum(count.staged for count in counts),
            inserted=sum(count.inserted for count in counts),
            updated=sum(count.updated for count in counts),
            marked_deleted=sum(count.marked_deleted for count in counts),
        )


@contextmanager
def connect(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """A connection whose session works in UTC and UTF-8, closed on exit."""
    parts = _readable_dsn(database_url)
    try:
        connection = psycopg2.connect(
            database_url, application_name="bis_assets", client_encoding="UTF8"
        )
    except psycopg2.Error as exc:
        reason = " ".join(str(exc).split())
        if parts.get("password"):
            reason = reason.replace(f'"{parts["password"]}"', '"***"')
        error = WarehouseError(
            None, f"cannot connect to the warehouse ({shown_dsn(database_url)}): {reason}"
        )
        # A server that is down or restarting may be back in a minute; a
        # database, user or password that is wrong will not mend itself.
        error.retryable = not any(marker in reason for marker in _LASTING_CONNECT_FAILURES)
        raise error from None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        connection.commit()
        yield connection
    finally:
        connection.close()


def ensure_table(connection: psycopg2.extensions.connection, table: TableName) -> None:
    """Create the schema and table when missing, then check the table can take upserts.

    Two first syncs may start at once on an empty database; an advisory lock
    makes one create while the other waits, instead of both racing on the
    catalog and one failing. An existing table is only inspected: no DDL, so
    no lock that would queue behind readers.
    """
    with connection, connection.cursor() as cursor:
        cursor.execute("SHOW server_encoding")
        (encoding,) = cursor.fetchone()
        if encoding != "UTF8":
            # LATIN1 would refuse most of Unicode; SQL_ASCII would keep bytes,
            # count varchar limits in bytes and show text mangled.
            raise WarehouseError(
                None,
                f"the warehouse database is encoded {encoding}; store the table in a "
                "UTF8 database (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)",
            )
        cursor.execute("SELECT to_regclass(%s)", (table.identifier.as_string(cursor),))
        if cursor.fetchone()[0] is None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_LOCK_NAMESPACE,))
            cursor.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(table.schema))
            )
            cursor.execute(_create_table_sql(table))
        _check_table_shape(cursor, table)


def _create_table_sql(table: TableName) -> sql.Composed:
    definitions = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(column.name),
            sql.SQL(column.sql_type),
            sql.SQL("" if column.nullable else " NOT NULL"),
        )
        for column in TABLE_COLUMNS
    ]
    definitions.append(
        sql.SQL("PRIMARY KEY ({})").format(
            sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMNS))
        )
    )

    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
        table.identifier, sql.SQL(", ").join(definitions)
    )


def _check_table_shape(cursor: psycopg2.extensions.cursor, table: TableName) -> None:
    """Fail clearly when a table made by someone else lacks our columns or key."""
    cursor.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND table_name = %s",
        (table.schema, table.table),
    )
    present = {name for (name,) in cursor.fetchall()}
    missing = [name for name in column_names(TABLE_COLUMNS) if name not in present]
    if missing:
        raise WarehouseError(
            None, f"table {table} exists without columns {missing}; add them or drop the table"
        )

    cursor.execute(
        """
        SELECT 1 FROM pg_index i
        WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL
          AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
               FROM pg_attribute a
               WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))
              = %s::text[]
        """,
        (table.identifier.as_string(cursor), sorted(KEY_COLUMNS)),
    )
    if cursor.fetchone() is None:
        raise WarehouseError(
            None,
            f"table {table} has no unique key on ({', '.join(KEY_COLUMNS)}), which the "
            f"upsert needs. Repair: ALTER TABLE {table} ADD PRIMARY KEY "
            f"({', '.join(KEY_COLUMNS)}) after removing duplicate rows",
        )


def load(
    connection: psycopg2.extensions.connection,
    table: TableName,
    frame: pd.DataFrame,
    complete_accounts: Sequence[str] = (),
    max_deleted_share: float = 1.0,
) -> LoadResult:
    """Upsert ``frame`` in one transaction; commit all of it or none.

    Rows of ``complete_accounts`` that the frame lacks are marked deleted as
    of the frame's ``__synced_at``, unless that would mark more than
    ``max_deleted_share`` of an account's current rows: then nothing is
    committed.
    """
    _check_unique_keys(frame)
    accounts = sorted(set(frame[ACCOUNT_COLUMN]) | set(complete_accounts))

    with connection, connection.cursor() as cursor:
        _lock_accounts(cursor, table, accounts)
        live_before = _live_rows(cursor, table, complete_accounts)
        _stage(cursor, table, frame)
        written = _upsert_from_staging(cursor, table)
        marked: dict[str, int] = {}
        if complete_accounts:
            synced_at = frame[SYNCED_AT_COLUMN].max() if len(frame) else datetime.now(UTC)
            marked = _mark_deleted(
                cursor, table, live_before, synced_at, max_deleted_share
            )

    staged = frame[ACCOUNT_COLUMN].value_counts()
    return LoadResult(
        {
            account: LoadCounts(
                staged=int(staged.get(account, 0)),
                inserted=written.get(account, (0, 0))[0],
                updated=written.get(account, (0, 0))[1],
                marked_deleted=marked.get(account, 0),
            )
            for account in accounts
        }
    )


def _check_unique_keys(frame: pd.DataFrame) -> None:
    repeated = frame[frame.duplicated(list(KEY_COLUMNS))]
    if len(repeated):
        first = repeated.iloc[0]
        raise WarehouseError(
            first[ACCOUNT_COLUMN],
            f"{len(repeated)} rows repeat a key already in the frame (first "
            f"{first[SYNC_KEY_COLUMN]}); de-duplicate before loading",
        )


def _lock_accounts(cursor: psycopg2.extensions.cursor, table: TableName, accounts: list) -> None:
    """Serialize loads of the same account; sorted order rules out deadlocks."""
    for account in accounts:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
            (_LOCK_NAMESPACE, f"{table}:{account}"),
        )


def _stage(cursor: psycopg2.extensions.cursor, table: TableName, frame: pd.DataFrame) -> None:
    staging = sql.Identifier(STAGING_TABLE)
    cursor.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
            staging, table.identifier
        )
    )
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(
        staging, sql.SQL(", ").join(map(sql.Identifier, column_names()))
    )
    for chunk in copy_chunks(frame):
        cursor.copy_expert(copy.as_string(cursor), io.BytesIO(chunk))
    # Autovacuum never analyzes a temporary table; without row counts the
    # planner would join a million staged rows as if they were a handful.
    cursor.execute(sql.SQL("ANALYZE {}").format(staging))


def _upsert_from_staging(
    cursor: psycopg2.extensions.cursor, table: TableName
) -> dict[str, tuple[int, int]]:
    """Insert new keys and rewrite changed rows; an unchanged row is not touched.

    Returns (inserted, updated) by account.

    ON CONFLICT locks every conflicting row, a write to its page, even when
    its WHERE then skips the update; so the join first drops the staged rows
    equal to the stored ones. Rows go in in __sync_key order, the key
    index's order within an account, sorted fastest in the "C" collation.
    """
    names = column_names() + [DELETED_AT.name]
    updated_names = [name for name in names if name not in KEY_COLUMNS]
    compared = [name for name in updated_names if name != SYNCED_AT_COLUMN]

    def listed(prefix: str, listed_names: list[str]) -> sql.Composable:
        return sql.SQL(", ").join(
            sql.SQL("{}.{}").format(sql.Identifier(prefix), sql.Identifier(name))
            for name in listed_names
        )

    statement = sql.SQL(
        """
        WITH written AS (
            INSERT INTO {target} AS current ({columns})
            SELECT {staged_columns} FROM {staging} AS staged
            LEFT JOIN {target} AS stored
              ON stored.{account} = staged.{account} AND stored.{key} = staged.{key}
            WHERE stored.{key} IS NULL OR ({stored_values}) IS DISTINCT FROM ({staged_values})
            ORDER BY staged.{key} COLLATE "C", staged.{account} COLLATE "C"
            ON CONFLICT ({conflict}) DO UPDATE SET ({updated}) = ROW({excluded})
            WHERE ({current_values}) IS DISTINCT FROM ({new_values})
            RETURNING current.{account}, xmax = 0 AS inserted
        )
        SELECT {account}, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted)
        FROM written GROUP BY {account}
        """
    ).format(
        target=table.identifier,
        columns=sql.SQL(", ").join(map(sql.Identifier, names)),
        staged_columns=listed("staged", names),
        staging=sql.Identifier(STAGING_TABLE),
        account=sql.Identifier(ACCOUNT_COLUMN),
        key=sql.Identifier(SYNC_KEY_COLUMN),
        stored_values=listed("stored", compared),
        staged_values=listed("staged", compared),
        conflict=sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMNS)),
        updated=sql.SQL(", ").join(map(sql.Identifier, updated_names)),
        excluded=listed("excluded", updated_names),
        current_values=listed("current", compared),
        new_values=listed("excluded", compared),
    )
    cursor.execute(statement)

    return {account: (inserted, updated) for account, inserted, updated in cursor.fetchall()}


def _live_rows(
    cursor: psycopg2.extensions.cursor, table: TableName, accounts: Sequence[str]
) -> dict[str, int]:
    """How many rows of each account are not marked deleted, before this load."""
    cursor.execute(
        sql.SQL(
            "SELECT {account}, count(*) FROM {target} "
            "WHERE {account} = ANY(%s) AND {deleted_at} IS NULL GROUP BY {account}"
        ).format(
            target=table.identifier,
            account=sql.Identifier(ACCOUNT_COLUMN),
            deleted_at=sql.Identifier(DELETED_AT.name),
        ),
        (list(accounts),),
    )

    return {account: 0 for account in accounts} | dict(cursor.fetchall())


def _mark_deleted(
    cursor: psycopg2.extensions.cursor,
    table: TableName,
    live_before: dict[str, int],
    synced_at: datetime,
    max_share: float,
) -> dict[str, int]:
    """Mark the accounts' rows this complete sync did not return; refuse a wipe.

    The share is taken of the rows the account had before this sync, so
    rows it inserts cannot dilute a wipe of the old ones.
    """
    statement = sql.SQL(
        """
        WITH gone AS (
            UPDATE {target} AS current SET {deleted_at} = %(synced_at)s
            WHERE current.{account} = ANY(%(accounts)s) AND current.{deleted_at} IS NULL
              AND NOT EXISTS (
                  SELECT 1 FROM {staging} AS seen
                  WHERE seen.{account} = current.{account} AND seen.{key} = current.{key})
            RETURNING current.{account}
        )
        SELECT {account}, count(*) FROM gone GROUP BY {account}
        """
    ).format(
        target=table.identifier,
        staging=sql.Identifier(STAGING_TABLE),
        account=sql.Identifier(ACCOUNT_COLUMN),
        key=sql.Identifier(SYNC_KEY_COLUMN),
        deleted_at=sql.Identifier(DELETED_AT.name),
    )
    # Right after a first sync the planner takes the account for a few rows
    # and checks each against all of staging: hours for a 100k-row account.
    # A hash anti join is linear whatever it thinks.
    cursor.execute("SELECT current_setting('enable_nestloop')")
    (nestloop,) = cursor.fetchone()
    cursor.execute("SET LOCAL enable_nestloop = off")
    cursor.execute(statement, {"synced_at": synced_at, "accounts": list(live_before)})
    gone_by_account = cursor.fetchall()
    cursor.execute("SELECT set_config('enable_nestloop', %s, true)", (nestloop,))

    for account, gone in gone_by_account:
        tracked = live_before[account]
        if gone > max_share * tracked:
            raise WarehouseError(
                account,
                f"the sync no longer returns {gone} of the {tracked} rows in {table} "
                f"({gone / tracked:.0%}), more than the allowed {max_share:.0%}; "
                "nothing was changed. If the store really lost them, raise "
                "max_deleted_share for one run",
            )

    return dict(gone_by_account)


def copy_chunks(frame: pd.DataFrame, chunk_rows: int = COPY_CHUNK_ROWS) -> Iterator[bytes]:
    """The frame in COPY text format, a bounded chunk at a time."""
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start : start + chunk_rows]
        fields = [_copy_field(part[column.name], column) for column in FRAME_COLUMNS]
        # Plain lists and str.join: pandas' str.cat over object Series is far slower.
        lines = map("\t".join, zip(*fields, strict=True))
        # Encoded line by line: one emoji would make a joined str four bytes a
        # character, the whole chunk long.
        yield b"\n".join(map(str.encode, lines)) + b"\n"


def _copy_field(values: pd.Series, column: Column) -> list[str]:
    """One column as COPY text fields, ``\\N`` where a value is missing."""
    missing = values.isna().to_numpy()
    if column.kind == "int":
        text = list(map(str, values.to_numpy(dtype="int64", na_value=0).tolist()))
    elif column.kind == "time":
        stamps = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        text = np.datetime_as_string(stamps, unit="us", timezone="UTC").tolist()
    elif column.kind == "decimal":
        text = list(map(str, values.tolist()))
    else:
        text = _escaped(np.where(missing, "", values.to_numpy(dtype=object)).tolist())
    if not missing.any():
        return text

    return np.where(missing, _COPY_NULL, np.array(text, dtype=object)).tolist()


def _escaped(texts: list[str]) -> list[str]:
    """``texts`` with COPY's four special characters escaped.

    They are rare, so one scan of the joined column decides whether any
    text needs a per-value ``translate`` at all.
    """
    joined = "".join(texts)
    if any(special in joined for special in _COPY_SPECIALS):
        return [text.translate(_COPY_ESCAPES) for text in texts]

    return texts


_LASTING_CONNECT_FAILURES = (
    "does not exist",
    "authentication failed",
    "no password supplied",
    "no pg_hba.conf entry",
    "permission denied",
)


def _readable_dsn(database_url: str) -> dict[str, str]:
    """The parts of ``database_url``; quoting none of it when it is malformed.

    libpq's complaints quote what they could not read, and a password with
    an unencoded @, / or : spills into the host, port or database name.
    """
    malformed = WarehouseError(
        None,
        "the warehouse address is not a readable libpq URL or DSN; use "
        "postgresql://user:password@host:5432/database, with @, / and : in the "
        "password percent-encoded (a postgresql+psycopg2:// URL is for Dagster's storage)",
    )
    try:
        parts = parse_dsn(database_url)
    except psycopg2.ProgrammingError:
        raise malformed from None
    ports = parts.get("port", "5432").split(",")
    if "@" in parts.get("host", "") or not all(port.isdigit() for port in ports):
        raise malformed

    return parts


def shown_dsn(database_url: str) -> str:
    """Where ``database_url`` leads, for messages: never its password."""
    try:
        parts = _readable_dsn(database_url)
    except WarehouseError:
        return "an address that is not a readable libpq URL or DSN"
    shown = ("host", "port", "dbname", "user")

    return " ".join(f"{key}={parts[key]}" for key in shown if key in parts)


def accounts_with_live_rows(
    connection: psycopg2.extensions.connection, table: TableName, accounts: Sequence[str]
) -> set[str]:
    """Those of ``accounts`` with rows not marked deleted (none without a table)."""
    with connection, connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s)", (table.identifier.as_string(cursor),))
        if cursor.fetchone()[0] is None:
            return set()
        _check_table_shape(cursor, table)  # a table of someone else's, named clearly
        cursor.execute(
            "SELECT has_table_privilege(%s, 'SELECT, INSERT, UPDATE')",
            (table.identifier.as_string(cursor),),
        )
        if not cursor.fetchone()[0]:
            raise WarehouseError(
                None, f"the warehouse user may not read and write {table}; grant it "
                "SELECT, INSERT and UPDATE there",
            )
        cursor.execute(
            sql.SQL(
                "SELECT account FROM unnest(%s::text[]) AS account WHERE EXISTS "
                "(SELECT 1 FROM {} WHERE {} = account AND {} IS NULL)"
            ).format(
                table.identifier, sql.Identifier(ACCOUNT_COLUMN), sql.Identifier(DELETED_AT.name)
            ),
            (list(accounts),),
        )
        return {account for (account,) in cursor.fetchall()}


def read_accounts(
    connection: psycopg2.extensions.connection,
    table: TableName,
    accounts: Sequence[str],
    include_deleted: bool = False,
) -> pd.DataFrame:
    """The stored rows of ``accounts`` as a frame with the table's dtypes."""
    statement = sql.SQL(
        "SELECT {columns} FROM {target} WHERE {account} = ANY(%s){live} ORDER BY {key}"
    ).format(
        columns=sql.SQL(", ").join(map(sql.Identifier, column_names(TABLE_COLUMNS))),
        target=table.identifier,
        account=sql.Identifier(ACCOUNT_COLUMN),
        live=sql.SQL("" if include_deleted else " AND {} IS NULL").format(
            sql.Identifier(DELETED_AT.name)
        ),
        key=sql.SQL(", ").join(map(sql.Identifier, KEY_COLUMNS)),
    )
    with connection, connection.cursor() as cursor:
        cursor.execute(statement, (list(accounts),))
        records = cursor.fetchall()

    return typed_frame(records, TABLE_COLUMNS)


def typed_frame(records: list[tuple], columns: tuple[Column, ...]) -> pd.DataFrame:
    """Records from the database as a frame with the dtypes the transform makes."""
    by_column = list(zip(*records, strict=True)) if records else [()] * len(columns)
    data = {}
    for column, values in zip(columns, by_column, strict=True):
        if column.kind == "int":
            dtype = "Int64" if column.sql_type == "bigint" else "Int32"
            data[column.name] = pd.Series(list(values), dtype=dtype)
        elif column.kind == "time":
            data[column.name] = pd.to_datetime(
                pd.Series(list(values), dtype=object), utc=True
            ).astype("datetime64[us, UTC]")
        else:
            data[column.name] = pd.Series(list(values), dtype=object)

    return pd.DataFrame(data)
