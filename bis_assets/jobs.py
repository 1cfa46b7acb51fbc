"""The job that syncs accounts: the notifications asset and its checks.

Its partitions are the asset's (Dagster infers them from the selection).
"""

from typing import TYPE_CHECKING

from dagster import AssetSelection, RetryPolicy, define_asset_job

from bis_assets.assets import back_in_stock_notifications
from bis_assets.failures import SYNC_RETRY_POLICY

if TYPE_CHECKING:  # what define_asset_job returns has no public name
    from dagster._core.definitions.unresolved_asset_job_definition import (
        UnresolvedAssetJobDefinition,
    )


def build_sync_job(
    retry_policy: RetryPolicy | None = SYNC_RETRY_POLICY,
) -> "UnresolvedAssetJobDefinition":
    """The sync job; ``retry_policy`` retries a sync step that failed transiently.

    The schedule and sensors start this job, so unattended syncs ride out a
    passing outage; a materialization started by hand from the asset fails
    at once, for the person watching it.
    """
    return define_asset_job(
        "sync_back_in_stock",
        selection=AssetSelection.assets(back_in_stock_notifications),
        description="Sync the Back In Stock variants report of the selected accounts",
        op_retry_policy=retry_policy,
    )


sync_job = build_sync_job()
