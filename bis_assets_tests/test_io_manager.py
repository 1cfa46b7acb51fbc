"""The IO manager hands a downstream asset exactly the partitions it asks for."""

from decimal import Decimal

import pandas as pd
from dagster import AssetIn, asset, materialize

from bis_assets.assets import back_in_stock_notifications
from bis_assets.partitions import account_partitions
from bis_assets_tests.harness import case_rows


@asset(
    partitions_def=account_partitions,
    ins={"notifications": AssetIn(back_in_stock_notifications.key)},
)
def priced_waiting(notifications: pd.DataFrame) -> dict:
    """What a downstream asset sees: the account's rows with the table's types."""
    return {
        "accounts": sorted(set(notifications["_account_id"])),
        "prices": sorted(str(price) for price in notifications["unit_price"].dropna()),
        "waiting": int(notifications["unsent_notifications_count"].sum()),
        "dtypes": {name: str(dtype) for name, dtype in notifications.dtypes.items()},
    }


def test_a_downstream_asset_reads_its_partition_back(harness):
    harness.add_account("acct_a", case_rows("missing-and-empty-numbers"))
    harness.add_account("acct_b", case_rows("null-sku"))
    harness.sync("acct_a")
    harness.sync("acct_b")

    result = materialize(
        [back_in_stock_notifications.to_source_asset(), priced_waiting],
        resources=harness.resources(),
        instance=harness.instance,
        partition_key="acct_a",
    )

    seen = result.output_for_node("priced_waiting")
    assert seen["accounts"] == ["acct_a"]
    assert seen["prices"] == [str(Decimal("49.00"))]
    assert seen["waiting"] == 2
    assert seen["dtypes"]["product_id"] == "Int64"
    assert seen["dtypes"]["notification_last_added_at"] == "datetime64[us, UTC]"
