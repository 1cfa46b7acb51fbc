"""The job that syncs accounts: the notifications asset and its checks.

Its partitions are the asset's (Dagster infers them from the selection).
"""

from dagster import AssetSelection, define_asset_job

from bis_assets.assets import back_in_stock_notifications

sync_job = define_asset_job(
    "sync_back_in_stock",
    selection=AssetSelection.assets(back_in_stock_notifications),
    description="Sync the Back In Stock variants report of the selected accounts",
)
