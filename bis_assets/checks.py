"""Asset checks that guard the sync key, each looking at its run's accounts only."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)
from psycopg2 import sql

from bis_assets.assets import back_in_stock_notifications
from bis_assets.columns import ACCOUNT_COLUMN, SYNC_KEY_COLUMN
from bis_assets.partitions import account_partitions
from bis_assets.resources import WarehouseResource

MAX_KEYS_SHOWN = 20


@asset_check(
    asset=back_in_stock_notifications, partitions_def=account_partitions, blocking=True
)
def sync_key_present_and_unique(
    context: AssetCheckExecutionContext, warehouse: WarehouseResource
) -> AssetCheckResult:
    """__sync_key is never NULL and never repeats within an account."""
    statement = sql.SQL(
        """
        SELECT {key}, count(*) FROM {table}
        WHERE {account} = ANY(%s)
        GROUP BY {account}, {key} HAVING {key} IS NULL OR count(*) > 1
        ORDER BY {key} NULLS FIRST LIMIT %s
        """
    )
    offenders = _query(context, warehouse, statement)

    return AssetCheckResult(
        passed=not offenders,
        metadata={
            "accounts": MetadataValue.json(list(context.partition_keys)),
            "bad_keys": MetadataValue.json([str(key) for key, _ in offenders]),
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

    return AssetCheckResult(
        passed=not offenders,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "accounts": MetadataValue.json(list(context.partition_keys)),
            "mismatched_keys": MetadataValue.json([stored for stored, _ in offenders]),
        },
    )


def _query(
    context: AssetCheckExecutionContext,
    warehouse: WarehouseResource,
    statement: sql.SQL,
) -> list[tuple]:
    composed = statement.format(
        table=warehouse.table.identifier,
        account=sql.Identifier(ACCOUNT_COLUMN),
        key=sql.Identifier(SYNC_KEY_COLUMN),
    )
    with warehouse.connect() as connection, connection.cursor() as cursor:
        cursor.execute(composed, (list(context.partition_keys), MAX_KEYS_SHOWN))
        return cursor.fetchall()
