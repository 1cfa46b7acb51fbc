"""A Dagster IO manager that upserts the notifications frame into PostgreSQL."""

import pandas as pd
from dagster import AssetObservation, ConfigurableIOManager, InputContext, OutputContext
from pydantic import Field

from bis_assets.columns import ACCOUNT_COLUMN
from bis_assets.errors import WarehouseError
from bis_assets.failures import final_when_permanent
from bis_assets.resources import WarehouseResource
from bis_assets.warehouse import LoadCounts, ensure_table, load, read_accounts

# Set by the asset on the frame's attrs: accounts whose report moved while it
# was read. Their rows load, but a missing row there proves nothing.
MOVED_ACCOUNTS = "bis_assets.moved_accounts"


class PostgresNotificationsIOManager(ConfigurableIOManager):
    """Upserts each run's accounts in one transaction and reads them back.

    Rows of an account that a complete sync no longer returns are marked in
    ``__deleted_at``, within ``max_deleted_share`` of the account's rows.
    """

    warehouse: WarehouseResource
    max_deleted_share: float = Field(
        default=0.5,
        description="Largest share of an account's rows one sync may mark deleted",
    )

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        with final_when_permanent():
            self._upsert(context, obj)

    def _upsert(self, context: OutputContext, obj: pd.DataFrame) -> None:
        accounts = _accounts_of(context)
        strangers = set(obj[ACCOUNT_COLUMN]) - set(accounts)
        if strangers:
            raise WarehouseError(
                sorted(strangers)[0], f"rows handed over outside the run's partitions {accounts}"
            )

        moved = obj.attrs.get(MOVED_ACCOUNTS, [])
        with self.warehouse.connect() as connection:
            ensure_table(connection, self.warehouse.table)
            result = load(
                connection,
                self.warehouse.table,
                obj,
                complete_accounts=[a for a in accounts if a not in moved],
                max_deleted_share=self.max_deleted_share,
            )

        total = result.total
        context.log.info(
            f"{self.warehouse.table}: {total.inserted} inserted, {total.updated} updated, "
            f"{total.unchanged} unchanged, {total.marked_deleted} marked deleted "
            f"for {len(accounts)} account(s)"
        )
        context.add_output_metadata(
            {"table": str(self.warehouse.table), **_count_metadata(total)}
        )
        if len(accounts) > 1:
            # The figures above are the run's; each partition also gets its own.
            for account, counts in result.by_account.items():
                context.log_event(
                    AssetObservation(
                        context.asset_key, partition=account, metadata=_count_metadata(counts)
                    )
                )

    def load_input(self, context: InputContext) -> pd.DataFrame:
        accounts = _accounts_of(context)
        with self.warehouse.connect() as connection:
            return read_accounts(connection, self.warehouse.table, accounts)


def _count_metadata(counts: LoadCounts) -> dict[str, int]:
    return {
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_unchanged": counts.unchanged,
        "rows_marked_deleted": counts.marked_deleted,
        "dagster/row_count": counts.staged,
    }


def _accounts_of(context: InputContext | OutputContext) -> list[str]:
    if not context.has_asset_partitions:
        raise WarehouseError(None, "the notifications asset must be partitioned by account")

    return sorted(context.asset_partition_keys)
