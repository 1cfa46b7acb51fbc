"""Asset checks on the notifications table, each looking at its run's accounts only.

Rules that must hold have severity ERROR; expectations that may bend have
severity WARN and put the measured value and its threshold in metadata.
What a sync reported comes from the latest materialization of each account's
partition; what the table holds comes from SQL restricted to the accounts.
Every check judges each account on its own, so each partition shows its own
result, also after a run that synced several accounts at once.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    EventLogRecord,
    asset_check,
    multi_asset_check,
)

# Not exported by dagster; it ties a logged evaluation to the materialization it judged.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from psycopg2 import sql
from psycopg2.extensions import cursor as Cursor

from bis_assets.assets import back_in_stock_notifications
from bis_assets.columns import ACCOUNT_COLUMN, DELETED_AT, SYNC_KEY_COLUMN
from bis_assets.partitions import account_partitions
from bis_assets.resources import WarehouseResource

NOTIFICATIONS = back_in_stock_notifications.key
MAX_KEYS_SHOWN = 20

# Soft expectations: a WARN result once the measured value passes these.
MAX_COUNT_MISMATCHES = 0  # rows where notifications_count != sent + unsent
MAX_ROWS_SKIPPED = 0  # rows the API sent without product_id or variant_no
# A store that drops a tenth of its variants in one day deserves a look.
MAX_VANISHED_SHARE = 0.10

# Float seconds in metadata cannot hold every microsecond of the sync time.
SYNC_TIME_TOLERANCE = timedelta(milliseconds=1)

ByAccount = dict[str, AssetCheckResult]


@dataclass(frozen=True)
class Evidence:
    """What the checks of one run look at: the syncs' records and the table."""

    accounts: list[str]
    syncs: dict[str, EventLogRecord]  # account -> its latest materialization
    cursor: Cursor
    warehouse: WarehouseResource

    def figures(self, account: str) -> dict[str, Any]:
        """The metadata values of the account's latest sync."""
        metadata = self.syncs[account].asset_materialization.metadata

        return {name: value.value for name, value in metadata.items()}

    def query(self, statement: sql.SQL, params: Sequence | dict) -> list[tuple]:
        self.cursor.execute(_compose(statement, self.warehouse), params)
        return self.cursor.fetchall()

    def tally(self, statement: sql.SQL) -> dict[str, tuple[int, list]]:
        """Per account: how many offenders ``statement`` counts, and the first few."""
        found = {
            account: (count, shown)
            for account, count, shown in self.query(
                statement, {"accounts": self.accounts, "shown": MAX_KEYS_SHOWN}
            )
        }

        return {account: found.get(account, (0, [])) for account in self.accounts}

    def live_rows(self) -> dict[str, int]:
        """Rows not marked vanished, per account."""
        statement = sql.SQL(
            "SELECT {account}, count(*) FROM {table} "
            "WHERE {account} = ANY(%s) AND {deleted_at} IS NULL GROUP BY {account}"
        )
        counts = dict(self.query(statement, (self.accounts,)))

        return {account: counts.get(account, 0) for account in self.accounts}


def latest_syncs(instance: DagsterInstance, accounts: Sequence[str]) -> dict[str, EventLogRecord]:
    """Each account's latest materialization that carries its own figures."""
    storage_ids = instance.event_log_storage.get_latest_storage_id_by_partition(
        NOTIFICATIONS, DagsterEventType.ASSET_MATERIALIZATION, partitions=set(accounts)
    )
    if not storage_ids:
        return {}

    records = instance.fetch_materializations(
        AssetRecordsFilter(NOTIFICATIONS, storage_ids=list(storage_ids.values())),
        limit=len(storage_ids),
    ).records

    # Materializations older than the per-account figures cannot be checked.
    return {
        record.partition_key: record
        for record in records
        if "synced_at" in record.asset_materialization.metadata
    }


@contextmanager
def gathered(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> Iterator[Evidence]:
    """The evidence for the run's accounts, over one connection."""
    accounts = list(context.partition_keys)
    syncs = latest_syncs(context.instance, accounts)
    never = [account for account in accounts if account not in syncs]
    if never:
        context.log.info(f"no sync recorded yet for {never}; only the table is checked")

    with warehouse.connect() as connection, connection.cursor() as cursor:
        yield Evidence(accounts, syncs, cursor, warehouse)


def _unique_keys(evidence: Evidence) -> ByAccount:
    statement = sql.SQL(
        """
        SELECT {account}, count(*),
               (array_agg(coalesce({key}, 'NULL') ORDER BY {key} NULLS FIRST))[1:%(shown)s]
        FROM (SELECT {account}, {key} FROM {table}
              WHERE {account} = ANY(%(accounts)s) GROUP BY {account}, {key}
              HAVING {key} IS NULL OR count(*) > 1) AS repeated
        GROUP BY {account}
        """
    )

    return {
        account: AssetCheckResult(
            passed=not count,
            description=_listing(
                count, shown, "__sync_key NULL or repeated", "every __sync_key is unique"
            ),
            metadata={"bad_keys": shown},
        )
        for account, (count, shown) in evidence.tally(statement).items()
    }


def _keys_match_columns(evidence: Evidence) -> ByAccount:
    statement = sql.SQL(
        """
        SELECT {account}, count(*), (array_agg({key} ORDER BY {key}))[1:%(shown)s]
        FROM {table}
        WHERE {account} = ANY(%(accounts)s)
          AND md5(concat(sku, product_id, variant_no)) IS DISTINCT FROM {key}
        GROUP BY {account}
        """
    )

    return {
        account: AssetCheckResult(
            passed=not count,
            description=_listing(
                count, shown, "__sync_key unlike md5(sku, product_id, variant_no)",
                "every key matches",
            ),
            metadata={"mismatched_keys": shown},
        )
        for account, (count, shown) in evidence.tally(statement).items()
    }


def _colliding_identities(evidence: Evidence) -> ByAccount:
    """The table keeps one row per key, so only the sync saw the other identities."""
    results = {}
    for account in evidence.syncs:
        figures = evidence.figures(account)
        keys = figures["colliding_key_values"]
        results[account] = AssetCheckResult(
            passed=not figures["colliding_keys"],
            severity=AssetCheckSeverity.WARN,
            description=(
                f"{figures['colliding_identities']} distinct (sku, product_id, variant_no) "
                f"share {figures['colliding_keys']} __sync_key: {', '.join(keys)}"
                if figures["colliding_keys"]
                else "no two identities share a __sync_key"
            ),
            metadata={
                "colliding_keys": figures["colliding_keys"],
                "colliding_identities": figures["colliding_identities"],
                "colliding_key_values": keys,
                "threshold": 0,
            },
        )

    return results


def _rows_match_sync(evidence: Evidence) -> ByAccount:
    live = evidence.live_rows()
    results = {}
    for account in evidence.syncs:
        synced = evidence.figures(account)["rows"]
        results[account] = AssetCheckResult(
            passed=synced == live[account],
            description=(
                f"the sync produced {synced} rows, the table holds {live[account]}"
                if synced != live[account]
                else f"the table holds the {synced} rows the sync produced"
            ),
            metadata={"rows_synced": synced, "rows_in_table": live[account]},
        )

    return results


def _counts_add_up(evidence: Evidence) -> ByAccount:
    # bigint: two integer counts near the top of their range must not overflow.
    statement = sql.SQL(
        """
        SELECT {account}, count(*), (array_agg({key} ORDER BY {key}))[1:%(shown)s]
        FROM {table}
        WHERE {account} = ANY(%(accounts)s) AND {deleted_at} IS NULL
          AND notifications_count
              <> sent_notifications_count::bigint + unsent_notifications_count
        GROUP BY {account}
        """
    )

    return {
        account: AssetCheckResult(
            passed=count <= MAX_COUNT_MISMATCHES,
            severity=AssetCheckSeverity.WARN,
            description=_listing(
                count, shown, "rows where notifications_count is not sent + unsent",
                "notifications_count is sent + unsent in every row",
            ),
            metadata={
                "mismatched_rows": count,
                "threshold": MAX_COUNT_MISMATCHES,
                "mismatched_keys": shown,
            },
        )
        for account, (count, shown) in evidence.tally(statement).items()
    }


def _rows_skipped(evidence: Evidence) -> ByAccount:
    results = {}
    for account in evidence.syncs:
        skipped = evidence.figures(account)["rows_skipped"]
        results[account] = AssetCheckResult(
            passed=skipped <= MAX_ROWS_SKIPPED,
            severity=AssetCheckSeverity.WARN,
            description=(
                f"{skipped} rows without product_id or variant_no were not loaded"
                if skipped
                else "every row could be identified"
            ),
            metadata={"rows_skipped": skipped, "threshold": MAX_ROWS_SKIPPED},
        )

    return results


def _rows_vanished(evidence: Evidence) -> ByAccount:
    # The load marks rows no earlier than the sync began; older marks are older.
    statement = sql.SQL(
        "SELECT count(*) FROM {table} WHERE {account} = %s AND {deleted_at} >= %s"
    )
    live = evidence.live_rows()

    results = {}
    for account in evidence.syncs:
        began = datetime.fromtimestamp(evidence.figures(account)["synced_at"], UTC)
        [(vanished,)] = evidence.query(statement, (account, began - SYNC_TIME_TOLERANCE))
        share = vanished / (vanished + live[account]) if vanished else 0.0
        results[account] = AssetCheckResult(
            passed=share <= MAX_VANISHED_SHARE,
            severity=AssetCheckSeverity.WARN,
            description=f"{vanished} rows ({share:.0%}) vanished in the latest sync",
            metadata={
                "rows_vanished": vanished,
                "share": round(share, 4),
                "threshold_share": MAX_VANISHED_SHARE,
            },
        )

    return results


def report(
    context: AssetCheckExecutionContext,
    name: str,
    results: ByAccount,
    evidence: Evidence,
    blocking: bool = False,
) -> AssetCheckResult:
    """The run's result of check ``name``, built from each account's result.

    Dagster files a check's result under the partition only when the run has
    one; for a run of several accounts each account's result is logged here
    under its own partition, and the run's result sums them up.
    """
    judged = {account: results.get(account, NEVER_SYNCED) for account in evidence.accounts}
    if len(judged) == 1:
        [result] = judged.values()
        return _named(name, result, evidence.accounts)

    for account, result in judged.items():
        context.op_execution_context.log_event(
            _evaluation(name, account, result, evidence, blocking)
        )

    failed = {account: result for account, result in judged.items() if not result.passed}
    errors = any(result.severity == AssetCheckSeverity.ERROR for result in failed.values())
    summary = AssetCheckResult(
        passed=not failed,
        severity=AssetCheckSeverity.ERROR if errors or not failed else AssetCheckSeverity.WARN,
        description="; ".join(f"{account}: {r.description}" for account, r in failed.items())
        or f"passed for each of the {len(judged)} accounts",
        metadata={"failed_accounts": sorted(failed)},
    )
    return _named(name, summary, evidence.accounts)


NEVER_SYNCED = AssetCheckResult(
    passed=True, description="no sync of this account is recorded yet: nothing to compare"
)


def _evaluation(
    name: str, account: str, result: AssetCheckResult, evidence: Evidence, blocking: bool
) -> AssetCheckEvaluation:
    sync = evidence.syncs.get(account)
    target = (
        AssetCheckEvaluationTargetMaterializationData(
            storage_id=sync.storage_id, run_id=sync.run_id, timestamp=sync.timestamp
        )
        if sync
        else None
    )

    return AssetCheckEvaluation(
        asset_key=NOTIFICATIONS,
        check_name=name,
        passed=result.passed,
        metadata=result.metadata,
        target_materialization_data=target,
        severity=result.severity,
        description=result.description,
        blocking=blocking,
        partition=account,
    )


def _named(name: str, result: AssetCheckResult, accounts: list[str]) -> AssetCheckResult:
    """``result`` as check ``name`` of the asset, listing the accounts it judged."""
    return AssetCheckResult(
        passed=result.passed,
        asset_key=NOTIFICATIONS,
        check_name=name,
        severity=result.severity,
        description=result.description,
        metadata={**result.metadata, "accounts": accounts},
    )


@asset_check(asset=back_in_stock_notifications, partitions_def=account_partitions, blocking=True)
def sync_key_present_and_unique(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    """__sync_key is never NULL and never repeats within an account."""
    with gathered(context, warehouse) as evidence:
        results = _unique_keys(evidence)

    return report(context, "sync_key_present_and_unique", results, evidence, blocking=True)


@asset_check(asset=back_in_stock_notifications, partitions_def=account_partitions)
def sync_key_matches_columns(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    """The key recomputed in SQL from sku, product_id and variant_no equals the stored one."""
    with gathered(context, warehouse) as evidence:
        results = _keys_match_columns(evidence)

    return report(context, "sync_key_matches_columns", results, evidence)


SYNC_EXPECTATIONS: dict[str, tuple[str, Callable[[Evidence], ByAccount]]] = {
    "sync_key_collisions": (
        "No two distinct (sku, product_id, variant_no) share a __sync_key",
        _colliding_identities,
    ),
    "row_count_matches_sync": (
        "The table holds exactly the live rows the account's sync produced",
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
    selected = {key.name for key in context.selected_asset_check_keys}

    with gathered(context, warehouse) as evidence:
        for name, (_, evaluate) in SYNC_EXPECTATIONS.items():
            if name in selected:
                yield report(context, name, evaluate(evidence), evidence)


def _listing(count: int, shown: list[str], problem: str, fine: str) -> str:
    if not count:
        return fine
    more = ", …" if count > len(shown) else ""

    return f"{count} {problem}: {', '.join(shown)}{more}"


def _compose(statement: sql.SQL, warehouse: WarehouseResource) -> sql.Composed:
    return statement.format(
        table=warehouse.table.identifier,
        account=sql.Identifier(ACCOUNT_COLUMN),
        key=sql.Identifier(SYNC_KEY_COLUMN),
        deleted_at=sql.Identifier(DELETED_AT.name),
    )


NOTIFICATIONS_CHECKS = (sync_key_present_and_unique, sync_key_matches_columns, sync_expectations)
