"""Assembles the project's Dagster definitions; nothing is defined here."""

import os

from dagster import Definitions, in_process_executor

from bis_assets.assets import back_in_stock_notifications
from bis_assets.checks import NOTIFICATIONS_CHECKS
from bis_assets.client import API_BASE_URL_ENV, DEFAULT_BASE_URL
from bis_assets.io_manager import PostgresNotificationsIOManager
from bis_assets.jobs import sync_job
from bis_assets.resources import AccountsResource, BackInStockResource, WarehouseResource
from bis_assets.schedules import daily_sync_schedule
from bis_assets.sensors import ALL_SENSORS

warehouse = WarehouseResource()

defs = Definitions(
    assets=[back_in_stock_notifications],
    asset_checks=list(NOTIFICATIONS_CHECKS),
    jobs=[sync_job],
    schedules=[daily_sync_schedule],
    sensors=list(ALL_SENSORS),
    # A sync is a handful of short steps; a process each would cost more than
    # the steps themselves.
    executor=in_process_executor,
    resources={
        "back_in_stock": BackInStockResource(
            base_url=os.environ.get(API_BASE_URL_ENV, DEFAULT_BASE_URL)
        ),
        "accounts": AccountsResource(path=os.environ.get("BIS_ACCOUNTS_FILE", "")),
        "warehouse": warehouse,
        "notifications_io_manager": PostgresNotificationsIOManager(warehouse=warehouse),
    },
)
