"""Asset checks on the notifications table, each looking at its run's accounts only.

Rules that must hold have severity ERROR; expectations that may bend have
severity WARN and put the measured value and its threshold in metadata.
What a sync reported comes from the latest materialization of each account's
partition; what the table holds comes from SQL restricted to the accounts.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    MetadataValue,
    asset_check,
    multi_asset_check,
)
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from bis_assets.assets import back_in_stock_notifications
from bis_assets.columns import ACCOUNT_COLUMN, DELETED_AT, SYNC_KEY_COLUMN
from bis_assets.partitions import account_partitions
from bis_assets.resources import WarehouseResource

MAX_KEYS_SHOWN = 20

# Soft expectations: a WARN result once the measured value passes these.
MAX_COUNT_MISMATCHES = 0  # rows where notifications_count != sent + unsent
MAX_ROWS_SKIPPED = 0  # rows the API sent without product_id or variant_no
# A store that drops a tenth of its variants in one day deserves a look.
MAX_VANISHED_SHARE = 0.10

# Float seconds in metadata cannot hold every microsecond of the sync time.
SYNC_TIME_TOLERANCE = timedelta(milliseconds=1)


@asset_check(
    asset=back_in_stock_notifications, partitions_def=account_partitions, blocking=True
)
def sync_key_present_and_unique(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    """__sync_key is never NULL and never repeats within an account."""
    statement = sql.SQL(
        """
        SELECT {account}, {key}, count(*) FROM {table}
        WHERE {account} = ANY(%s)
        GROUP BY {account}, {key} HAVING {key} IS NULL OR count(*) > 1
        ORDER BY {account}, {key} NULLS FIRST LIMIT %s
        """
    )
    offenders = _query(context, warehouse, statement)

    named = [f"{account}: {key or 'NULL'} ({rows} rows)" for account, key, rows in offenders]
    return AssetCheckResult(
        passed=not offenders,
        severity=AssetCheckSeverity.ERROR,
        description=_listing(named, "__sync_key NULL or repeated", "every __sync_key is unique"),
        metadata={
            "accounts": MetadataValue.json(list(context.partition_keys)),
            "bad_keys": MetadataValue.json([str(key) for _, key, _ in offenders]),
        },
    )


@asset_check(asset=back_in_stock_notifications, partitions_def=account_partitions)
def sync_key_matches_columns(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    """The key recomputed in SQL from sku, product_id and variant_no equals the stored one."""
    statement = sql.SQL(
        """
        SELECT {key}, md5(concat(sku, product_id, variant_no)) FROM {table}
        WHERE {account} = ANY(%s)
          AND md5(concat(sku, product_id, variant_no)) IS DISTINCT FROM {key}
        ORDER BY {key} LIMIT %s
        """
    )
    offenders = _query(context, warehouse, statement)

    stored = [str(key) for key, _ in offenders]
    return AssetCheckResult(
        passed=not offenders,
        severity=AssetCheckSeverity.ERROR,
        description=_listing(
            stored, "__sync_key unlike md5(sku, product_id, variant_no)", "every key matches"
        ),
        metadata={
            "accounts": MetadataValue.json(list(context.partition_keys)),
            "mismatched_keys": MetadataValue.json(stored),
        },
    )


@dataclass(frozen=True)
class Evidence:
    """What the checks of one run look at: the syncs' figures and the table."""

    accounts: list[str]
    synced: dict[str, dict[str, Any]]  # account -> its latest materialization's metadata
    cursor: Cursor
    warehouse: WarehouseResource

    def query(self, statement: sql.SQL, params: Sequence | dict) -> list[tuple]:
        self.cursor.execute(_compose(statement, self.warehouse), params)
        return self.cursor.fetchall()

    def live_rows(self) -> dict[str, int]:
        """Rows not marked vanished, per account."""
        statement = sql.SQL(
            "SELECT {account}, count(*) FROM {table} "
            "WHERE {account} = ANY(%s) AND {deleted_at} IS NULL GROUP BY {account}"
        )
        counts = dict(self.query(statement, (self.accounts,)))

        return {account: counts.get(account, 0) for account in self.accounts}


def latest_sync_figures(
    instance: DagsterInstance, accounts: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """The metadata of each account's latest materialization; never-synced ones are absent."""
    storage_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        back_in_stock_notifications.key,
        DagsterEventType.ASSET_MATERIALIZATION,
        partitions=set(accounts),
    )
    if not storage_ids:
        return {}

    records = instance.fetch_materializations(
        AssetRecordsFilter(
            back_in_stock_notifications.key, storage_ids=list(storage_ids.values())
        ),
        limit=len(storage_ids),
    ).records

    figures = {
        record.partition_key: {
            name: value.value for name, value in record.asset_materialization.metadata.items()
        }
        for record in records
    }

    # Materializations older than the per-account figures cannot be checked.
    return {account: found for account, found in figures.items() if "synced_at" in found}


def _colliding_identities(evidence: Evidence) -> AssetCheckResult:
    """The table keeps one row per key, so only the sync saw the other identities."""
    colliding = {
        account: figures
        for account, figures in sorted(evidence.synced.items())
        if figures.get("colliding_keys")
    }
    keys = sorted(key for figures in colliding.values() for key in figures["colliding_key_values"])
    named = [
        f"{account}: {figures['colliding_identities']} distinct (sku, product_id, variant_no) "
        f"share {figures['colliding_keys']} __sync_key: "
        + ", ".join(figures["colliding_key_values"])
        for account, figures in colliding.items()
    ]

    return AssetCheckResult(
        passed=not colliding,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(named) or "no two identities share a __sync_key",
        metadata={
            "colliding_keys": sum(figures["colliding_keys"] for figures in colliding.values()),
            "colliding_identities": sum(
                figures["colliding_identities"] for figures in colliding.values()
            ),
            "colliding_key_values": MetadataValue.json(keys[:MAX_KEYS_SHOWN]),
            "threshold": 0,
        },
    )


def _rows_match_sync(evidence: Evidence) -> AssetCheckResult:
    live = evidence.live_rows()
    differing = {
        account: {"synced": figures["rows"], "in_table": live[account]}
        for account, figures in sorted(evidence.synced.items())
        if figures["rows"] != live[account]
    }

    named = [
        f"{account}: the sync produced {counts['synced']} rows, "
        f"the table holds {counts['in_table']}"
        for account, counts in differing.items()
    ]
    return AssetCheckResult(
        passed=not differing,
        severity=AssetCheckSeverity.ERROR,
        description="; ".join(named) or "the table holds every row each sync produced",
        metadata={
            "rows_synced": sum(figures["rows"] for figures in evidence.synced.values()),
            "rows_in_table": sum(live[account] for account in evidence.synced),
            "differing_accounts": MetadataValue.json(differing),
        },
    )


def _counts_add_up(evidence: Evidence) -> AssetCheckResult:
    # bigint: two integer counts near the top of their range must not overflow.
    statement = sql.SQL(
        """
        SELECT count(*), (array_agg({key} ORDER BY {account}, {key}))[1:%s]
        FROM {table}
        WHERE {account} = ANY(%s) AND {deleted_at} IS NULL
          AND notifications_count
              <> sent_notifications_count::bigint + unsent_notifications_count
        """
    )
    [(mismatched, keys)] = evidence.query(statement, (MAX_KEYS_SHOWN, evidence.accounts))
    keys = keys or []

    return AssetCheckResult(
        passed=mismatched <= MAX_COUNT_MISMATCHES,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{mismatched} rows where notifications_count is not sent + unsent: "
            + ", ".join(keys)
            if mismatched
            else "notifications_count is sent + unsent in every row"
        ),
        metadata={
            "mismatched_rows": mismatched,
            "threshold": MAX_COUNT_MISMATCHES,
            "mismatched_keys": MetadataValue.json(keys),
        },
    )


def _rows_skipped(evidence: Evidence) -> AssetCheckResult:
    skipped = {
        account: figures["rows_skipped"] for account, figures in sorted(evidence.synced.items())
    }
    total = sum(skipped.values())

    return AssetCheckResult(
        passed=total <= MAX_ROWS_SKIPPED,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"{total} rows without product_id or variant_no were not loaded"
            if total
            else "every row could be identified"
        ),
        metadata={
            "rows_skipped": total,
            "threshold": MAX_ROWS_SKIPPED,
            "by_account": MetadataValue.json(skipped),
        },
    )


def _rows_vanished(evidence: Evidence) -> AssetCheckResult:
    # The load marks rows at or after the sync began; earlier marks are older.
    statement = sql.SQL(
        "SELECT count(*) FROM {table} WHERE {account} = %s AND {deleted_at} >= %s"
    )
    live = evidence.live_rows()
    vanished = {}
    for account, figures in sorted(evidence.synced.items()):
        began = datetime.fromtimestamp(figures["synced_at"], UTC) - SYNC_TIME_TOLERANCE
        [(vanished[account],)] = evidence.query(statement, (account, began))

    shares = {
        account: count / (count + live[account]) for account, count in vanished.items() if count
    }
    named = [
        f"{account}: {vanished[account]} rows ({share:.0%}) vanished in its latest sync"
        for account, share in shares.items()
    ]
    return AssetCheckResult(
        passed=all(share <= MAX_VANISHED_SHARE for share in shares.values()),
        severity=AssetCheckSeverity.WARN,
        description="; ".join(named) or "no row vanished",
        metadata={
            "rows_vanished": sum(vanished.values()),
            "largest_share": round(max(shares.values(), default=0.0), 4),
            "threshold_share": MAX_VANISHED_SHARE,
            "by_account": MetadataValue.json(vanished),
        },
    )


SYNC_EXPECTATIONS: dict[str, tuple[str, Callable[[Evidence], AssetCheckResult]]] = {
    "sync_key_collisions": (
        "No two distinct (sku, product_id, variant_no) share a __sync_key",
        _colliding_identities,
    ),
    "row_count_matches_sync": (
        "The table holds exactly the live rows each account's sync produced",
        _rows_match_sync,
    ),
    "notifications_count_adds_up": (
        "notifications_count equals sent + unsent notifications",
        _counts_add_up,
    ),
    "rows_skipped": ("The sync skipped no row for want of an id", _rows_skipped),
    "rows_vanished": ("One sync marks few of an account's rows vanished", _rows_vanished),
}


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            name,
            asset=back_in_stock_notifications,
            description=description,
            partitions_def=account_partitions,
        )
        for name, (description, _) in SYNC_EXPECTATIONS.items()
    ],
    can_subset=True,
)
def sync_expectations(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> Iterator[AssetCheckResult]:
    """What each sync reported, held against the table, in one step and one connection."""
    accounts = list(context.partition_keys)
    synced = latest_sync_figures(context.instance, accounts)
    unsynced = [account for account in accounts if account not in synced]
    if unsynced:
        context.log.info(f"accounts never materialized, checked as empty: {unsynced}")
    selected = {key.name for key in context.selected_asset_check_keys}

    with warehouse.connect() as connection, connection.cursor() as cursor:
        evidence = Evidence(accounts, synced, cursor, warehouse)
        for name, (_, evaluate) in SYNC_EXPECTATIONS.items():
            if name in selected:
                yield _named(name, evaluate(evidence), accounts)


def _named(name: str, result: AssetCheckResult, accounts: list[str]) -> AssetCheckResult:
    """``result`` as the named check of the asset, listing the accounts it saw."""
    return AssetCheckResult(
        passed=result.passed,
        asset_key=back_in_stock_notifications.key,
        check_name=name,
        severity=result.severity,
        description=result.description,
        metadata={**result.metadata, "accounts": MetadataValue.json(accounts)},
    )


def _listing(items: list[str], problem: str, fine: str) -> str:
    if not items:
        return fine
    more = "+" if len(items) >= MAX_KEYS_SHOWN else ""

    return f"{len(items)}{more} {problem}: {', '.join(items)}"


def _compose(statement: sql.SQL, warehouse: WarehouseResource) -> sql.Composed:
    return statement.format(
        table=warehouse.table.identifier,
        account=sql.Identifier(ACCOUNT_COLUMN),
        key=sql.Identifier(SYNC_KEY_COLUMN),
        deleted_at=sql.Identifier(DELETED_AT.name),
    )


def _query(
    context: AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    statement: sql.SQL,
) -> list[tuple]:
    with warehouse.connect() as connection, connection.cursor() as cursor:
        cursor.execute(
            _compose(statement, warehouse), (list(context.partition_keys), MAX_KEYS_SHOWN)
        )
        return cursor.fetchall()


NOTIFICATIONS_CHECKS = (sync_key_present_and_unique, sync_key_matches_columns, sync_expectations)
