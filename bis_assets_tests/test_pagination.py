"""Paging through servers that repeat, cap or shift their pages."""

import threading
import time

import pytest

from bis_assets.api_server import BackInStockServer, Fault
from bis_assets.api_server.catalog import storefront_rows, synthetic_rows
from bis_assets.client import BackInStockClient, ClientSettings
from bis_assets.errors import PaginationError
from bis_assets_tests.harness import case


def client_for(server: BackInStockServer, rows: list[dict], **settings) -> BackInStockClient:
    server.add_account("tok-paging", rows, name="paging")
    settings = {"backoff_factor": 0.0} | settings

    return BackInStockClient("paging", "tok-paging", ClientSettings(server.base_url, **settings))


def materialized(result) -> dict:
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    return {key: value.value for key, value in metadata.items()}


def all_rows(client: BackInStockClient) -> list[dict]:
    return [row for page in client.iter_pages() for row in page.rows]


def test_repeated_last_page(harness):
    given = case("repeated-last-page")
    harness.add_account("acct_a", responses=given["responses"])
    harness.api_settings = {"per_page": given["per_page"]}

    harness.sync("acct_a")

    assert [row["__sync_key"] for row in harness.rows("acct_a", order="sku")] == [
        "82dcd69cce5227c5ea8a7192624f1ea6",
        "5cc2bee5af2a7dbc8fd304e6ae2face5",
        "c7d3c26d04d28759fb17bafc8723e430",
        "a0b941d65091c83c2c27ee58d551ae63",
    ]
    assert harness.server.request_count <= 3


def test_rows_shift_between_pages(harness):
    given = case("rows-shift-between-pages")
    harness.add_account("acct_a", responses=given["responses"])
    harness.api_settings = {"per_page": given["per_page"]}

    result = harness.sync("acct_a")

    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["rows_fetched"].value == 5
    assert metadata["duplicates_dropped"].value == 1
    assert metadata["rows"].value == 4
    assert len(harness.rows("acct_a")) == 4


def test_every_storefront_variant_is_read(api_server):
    rows = storefront_rows("camerarigz")

    fetched = all_rows(client_for(api_server, rows))

    assert len(fetched) == 1615
    assert fetched == rows


def test_server_capping_the_page_size_is_not_taken_for_the_end(api_server):
    api_server.max_per_page = 40
    rows = synthetic_rows(1_000, seed=3)

    client = client_for(api_server, rows, per_page=250)

    assert all_rows(client) == rows


def test_server_repeating_its_last_page_forever_stops(api_server):
    api_server.repeat_last_page = True
    rows = synthetic_rows(95, seed=4)

    fetched = all_rows(client_for(api_server, rows, per_page=10))

    assert fetched == rows
    assert api_server.request_count <= 10 + 8  # the data, then at most one window


def test_server_ignoring_page_fails_clearly_instead_of_losing_rows(api_server):
    api_server.ignore_page = True
    rows = synthetic_rows(30, seed=5)

    with pytest.raises(PaginationError, match="'paging'.*ignores the page parameter"):
        all_rows(client_for(api_server, rows, per_page=10))
    assert api_server.request_count == 4  # pages 1, 2 and 3 in flight, then the probe


def test_a_report_that_fits_one_page_on_a_repeating_server_is_read_whole(api_server):
    api_server.repeat_last_page = True
    rows = synthetic_rows(7, seed=5)

    assert all_rows(client_for(api_server, rows, per_page=10)) == rows
    assert api_server.request_count == 4  # pages 1, 2 and 3 in flight, then the probe


def test_a_short_page_in_the_middle_is_not_the_end(api_server):
    rows = synthetic_rows(5, seed=9)
    api_server.add_account("tok-short", [], name="short")
    api_server.script(
        "tok-short",
        [
            {"page": 1, "body": rows[:2]},
            {"page": 2, "body": rows[2:3]},
            {"page": 3, "body": rows[3:5]},
        ],
    )
    client = BackInStockClient(
        "short", "tok-short", ClientSettings(api_server.base_url, per_page=2)
    )

    assert all_rows(client) == rows


def test_page_cap_fails_instead_of_looping(api_server):
    rows = synthetic_rows(50, seed=6)
    client = client_for(api_server, rows, per_page=5, max_pages=4)

    with pytest.raises(PaginationError, match="account 'paging': more than 4 pages"):
        all_rows(client)


def test_pages_come_out_in_order_with_many_in_flight(api_server):
    rows = synthetic_rows(2_000, seed=7)

    pages = list(client_for(api_server, rows, per_page=50, max_in_flight=8).iter_pages())

    assert [page.number for page in pages] == list(range(1, 41))
    assert [row for page in pages for row in page.rows] == rows


def test_rows_that_move_while_reading_are_never_marked_deleted(harness):
    rows = synthetic_rows(30, seed=8)
    harness.add_account("acct_a", rows)
    harness.api_settings = {"per_page": 10, "max_in_flight": 1}
    harness.sync("acct_a")
    harness.server.reset_log()
    harness.server.inject(Fault(200, page=2, hang=0.5))

    def drop_the_head_after_page_one() -> None:
        deadline = time.monotonic() + 10
        while not harness.server.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        harness.server.set_rows(harness.token("acct_a"), rows[1:])

    mover = threading.Thread(target=drop_the_head_after_page_one)
    mover.start()
    moved = harness.sync("acct_a")
    mover.join()
    steady = harness.sync("acct_a")

    assert moved.success and steady.success
    assert materialized(moved)["rows_fetched"] == 29  # row 10 slid onto page 1, unread
    assert materialized(moved)["rows_marked_deleted"] == 0
    assert materialized(steady)["rows_marked_deleted"] == 1
    deleted = [row["sku"] for row in harness.rows("acct_a") if row["__deleted_at"]]
    assert deleted == [rows[0]["sku"]]
