"""The job that syncs accounts: the notifications asset and its checks."""

from dagster import AssetSelection, define_asset_job

from bis_assets.assets import back_in_stock_notifications
from bis_assets.partitions import account_partitions

sync_job = define_asset_job(
    "sync_back_in_stock",
    selection=AssetSelection.assets(back_in_stock_notifications),
    partitions_def=account_partitions,
    description="Sync the Back In Stock variants report of the selected accounts",
)
