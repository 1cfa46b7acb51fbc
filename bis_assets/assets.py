"""The asset: each account's Back In Stock variants report, shaped for the table."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    MetadataValue,
    Output,
    TableColumn,
    TableSchema,
    asset,
)

from bis_assets.client import BackInStockClient
from bis_assets.columns import TABLE_COLUMNS
from bis_assets.failures import final_when_permanent
from bis_assets.io_manager import MOVED_ACCOUNTS
from bis_assets.partitions import account_partitions
from bis_assets.pools import API_POOL
from bis_assets.resources import AccountsResource, BackInStockResource, WarehouseResource
from bis_assets.transform import ShapedRows, frame_preview, shape_rows

MAX_KEYS_SHOWN = 20

TABLE_SCHEMA = TableSchema(
    columns=[TableColumn(column.name, column.sql_type) for column in TABLE_COLUMNS]
)


@asset(
    partitions_def=account_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    io_manager_key="notifications_io_manager",
    pool=API_POOL,
    group_name="back_in_stock",
    kinds={"postgres", "pandas"},
    metadata={
        "dagster/column_schema": TABLE_SCHEMA,
        "dagster/table_name": "back_in_stock.notifications",
    },
)
def back_in_stock_notifications(
    context: AssetExecutionContext,
    back_in_stock: BackInStockResource,
    accounts: AccountsResource,
    warehouse: WarehouseResource,
) -> Output[pd.DataFrame]:
    """One row per variant of each account's Back In Stock variants report."""
    with final_when_permanent():
        return _sync(context, back_in_stock, accounts, warehouse)


def _sync(
    context: AssetExecutionContext,
    back_in_stock: BackInStockResource,
    accounts: AccountsResource,
    warehouse: WarehouseResource,
) -> Output[pd.DataFrame]:
    started = time.monotonic()
    synced_at = datetime.now(UTC)
    results: dict[str, ShapedRows] = {}
    moved: list[str] = []
    pages = 0
    selected = accounts.select(context.partition_keys)
    # Asked before any request: a warehouse that cannot be reached fails the
    # run now, not after the whole report was read.
    with_live_rows = warehouse.accounts_with_live_rows(context.partition_keys)

    for account in selected:
        account_id = account.id
        with back_in_stock.client_for(account) as client:
            context.log.info(f"account {account_id}: reading {client!r}")
            progress = _Progress()
            rows = _logged_rows(context, client, progress)
            results[account_id] = shape_rows(rows, account.id, account.source_id, synced_at)
            pages += progress.pages
            # Rows can only be marked deleted where some are stored; only then
            # is it worth a request to see whether the report moved meanwhile.
            if account_id in with_live_rows and (
                client.fetch_page(1).rows != progress.first_page
            ):
                moved.append(account_id)
        _warn_about(context, account_id, results[account_id])
        # Each partition's materialization shows its own account's figures,
        # which the asset checks read (see checks.py).
        context.add_asset_metadata(
            _account_metadata(results[account_id], synced_at), partition_key=account_id
        )

    frame = pd.concat([result.frame for result in results.values()], ignore_index=True)
    if moved:
        context.log.warning(
            f"accounts {moved}: the report changed while it was read; every row read is "
            "loaded, but none is marked deleted until a sync reads a steady report"
        )
    frame.attrs[MOVED_ACCOUNTS] = moved

    return Output(frame, metadata=_metadata(results, pages, frame, time.monotonic() - started))


@dataclass
class _Progress:
    pages: int = 0
    rows: int = 0
    first_page: list[dict[str, Any]] = field(default_factory=list)


def _logged_rows(
    context: AssetExecutionContext, client: BackInStockClient, progress: _Progress
) -> Iterator[dict[str, Any]]:
    """The account's rows page by page, with one log line per page."""
    started = time.monotonic()
    for page in client.iter_pages():
        progress.pages += 1
        if page.number == 1:
            progress.first_page = page.rows
        progress.rows += len(page.rows)
        context.log.info(
            f"account {client.account_id}: page {page.number}, {len(page.rows)} rows "
            f"({progress.rows} so far, {time.monotonic() - started:.1f} s)"
        )
        yield from page.rows


def _warn_about(context: AssetExecutionContext, account_id: str, result: ShapedRows) -> None:
    if result.rows_skipped:
        context.log.warning(
            f"account {account_id}: skipped {result.rows_skipped} rows without "
            "product_id or variant_no (they cannot be identified)"
        )
    if result.colliding_keys:
        identities = sum(result.colliding_keys.values())
        context.log.warning(
            f"account {account_id}: {identities} distinct (sku, product_id, variant_no) "
            f"share {len(result.colliding_keys)} __sync_key; the last row read of each "
            f"key is kept: {sorted(result.colliding_keys)[:MAX_KEYS_SHOWN]}"
        )
    if result.invalid_values:
        context.log.warning(
            f"account {account_id}: values that could not be stored exactly were set "
            f"to NULL, by column: {result.invalid_values}"
        )


def _account_metadata(result: ShapedRows, synced_at: datetime) -> dict[str, Any]:
    """One account's figures; they override the run's totals on its partition."""
    colliding = sorted(result.colliding_keys)

    return {
        "synced_at": MetadataValue.timestamp(synced_at),
        "rows_fetched": result.rows_fetched,
        "rows_skipped": result.rows_skipped,
        "duplicates_dropped": result.duplicates_dropped,
        "colliding_keys": len(colliding),
        "colliding_identities": sum(result.colliding_keys.values()),
        "colliding_key_values": MetadataValue.json(colliding[:MAX_KEYS_SHOWN]),
        "invalid_values": MetadataValue.json(result.invalid_values),
        "rows": len(result.frame),
        "dagster/row_count": len(result.frame),
    }


def _metadata(
    results: dict[str, ShapedRows], pages: int, frame: pd.DataFrame, seconds: float
) -> dict[str, Any]:
    colliding = sorted(key for result in results.values() for key in result.colliding_keys)
    invalid: dict[str, int] = {}
    for result in results.values():
        for column, count in result.invalid_values.items():
            invalid[column] = invalid.get(column, 0) + count

    return {
        "accounts": len(results),
        "pages": pages,
        "rows_fetched": sum(result.rows_fetched for result in results.values()),
        "rows_skipped": sum(result.rows_skipped for result in results.values()),
        "duplicates_dropped": sum(result.duplicates_dropped for result in results.values()),
        "colliding_keys": len(colliding),
        "colliding_key_values": MetadataValue.json(colliding[:MAX_KEYS_SHOWN]),
        "invalid_values": MetadataValue.json(invalid),
        "rows": len(frame),
        "seconds": round(seconds, 3),
        "preview": MetadataValue.md(frame_preview(frame)),
    }
