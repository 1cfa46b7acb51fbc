"""The IO manager: a downstream asset gets its partitions; a missing warehouse is named."""

from decimal import Decimal

import pandas as pd
import pytest
from dagster import AssetIn, asset, materialize
from psycopg2.extensions import make_dsn

from bis_assets.assets import back_in_stock_notifications
from bis_assets.embedded import DATABASE_URL_ENV
from bis_assets.errors import ConfigurationError, WarehouseError
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


def test_without_a_warehouse_url_nothing_is_started_or_requested(harness, monkeypatch):
    harness.add_account("acct_a", case_rows("null-sku"))
    monkeypatch.delenv(DATABASE_URL_ENV)

    error = harness.permanent_error("acct_a")

    assert isinstance(error, ConfigurationError)
    assert str(error).startswith("BIS_DATABASE_URL is not set; set it")
    assert harness.server.request_count == 0


def test_an_unreachable_warehouse_fails_before_the_report_is_read(
    harness, database_url, monkeypatch
):
    harness.add_account("acct_a", case_rows("null-sku"))
    missing = make_dsn(database_url, dbname="bis_no_such_database", password="pw-secret")
    monkeypatch.setenv(DATABASE_URL_ENV, missing)

    error = harness.permanent_error("acct_a")

    message = str(error)
    assert isinstance(error, WarehouseError)
    assert message.startswith("cannot connect to the warehouse (")
    assert "dbname=bis_no_such_database" in message
    assert 'database "bis_no_such_database" does not exist' in message
    assert "pw-secret" not in message
    assert harness.server.request_count == 0


@pytest.mark.parametrize(
    "address",
    [
        "postgresql+psycopg2://deployer:Pa55-w0rd-SECRETX@/wh?host=/tmp/nowhere",
        "postgresql://deployer:Pa55%zzSECRETX@127.0.0.1:9/wh",
        "Pa55-w0rd-SECRETX",
        "postgresql://postgres:p@ssSECRETX@127.0.0.1/db",
        "postgresql://postgres:pa/ssSECRETX@127.0.0.1/db",
        "postgresql://postgres@127.0.0.1:SECRETX/db",
    ],
)
def test_an_unreadable_warehouse_address_is_never_quoted(harness, monkeypatch, address):
    harness.add_account("acct_a", case_rows("null-sku"))
    monkeypatch.setenv(DATABASE_URL_ENV, address)

    error = harness.permanent_error("acct_a")

    assert isinstance(error, WarehouseError)
    assert str(error).startswith("the warehouse address is not a readable libpq URL")
    assert "SECRETX" not in str(error)
