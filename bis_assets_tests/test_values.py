"""Numbers, text and times from the API, stored exactly or as NULL."""

from datetime import UTC, datetime
from decimal import Decimal

import pandas as pd
import psycopg2

from bis_assets.api_server.catalog import storefront_rows
from bis_assets.transform import shape_rows
from bis_assets_tests.harness import case_rows

SYNCED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BASE_ROW = {
    "sku": "bullseye-01",
    "product_id": 280917149,
    "variant_no": 661821745,
    "description": "Bullseye Small / with accessories",
    "unsent_notifications_count": 1,
    "sent_notifications_count": 0,
    "notifications_count": 1,
    "notification_last_added_at": "2015-03-23T13:34:41.084Z",
    "unit_price": "49.00",
}


def shape(*rows: dict) -> pd.DataFrame:
    return shape_rows(list(rows), "acct_a", "src-a", SYNCED_AT).frame


def row(**changes) -> dict:
    return BASE_ROW | changes


def test_null_in_integer_column(harness):
    harness.add_account("acct_a", case_rows("null-in-integer-column"))

    harness.sync("acct_a")

    first, second = harness.rows("acct_a", order="sku")
    assert first["__sync_key"] == "82dcd69cce5227c5ea8a7192624f1ea6"
    assert (first["product_id"], first["variant_no"]) == (280917149, 661821745)
    assert second["__sync_key"] == "5cc2bee5af2a7dbc8fd304e6ae2face5"
    assert second["unsent_notifications_count"] is None
    assert "280917149.0" not in repr([first, second]) and "NaN" not in repr([first, second])


def test_missing_and_empty_numbers(harness):
    harness.add_account("acct_a", case_rows("missing-and-empty-numbers"))

    harness.sync("acct_a")

    stored = {row["sku"]: row for row in harness.rows("acct_a")}
    assert {sku: row["unit_price"] for sku, row in stored.items()} == {
        "bullseye-01": None,
        "bullseye-02": None,
        "bullseye-03": Decimal("49.00"),
    }
    assert stored["bullseye-03"]["unsent_notifications_count"] is None


def test_null_sku(harness):
    harness.add_account("acct_a", case_rows("null-sku"))

    harness.sync("acct_a")

    stored = {row["description"]: row for row in harness.rows("acct_a")}
    assert stored["No SKU"]["sku"] is None
    assert stored["No SKU"]["__sync_key"] == "be403c74ef7e7b5fcc1475c4be1f6fe0"
    assert stored["Literal None"]["sku"] == "None"
    assert stored["Literal None"]["__sync_key"] == "0d9f162865078861441e95aa859d2679"
    assert "34563035472bb6a595ebfb8ce98d4d4c" not in {r["__sync_key"] for r in stored.values()}


def test_truncate_by_characters(harness):
    harness.add_account("acct_a", case_rows("truncate-by-characters"))

    harness.sync("acct_a")

    (stored,) = harness.rows("acct_a")
    assert stored["sku"] == "é" * 64 and len(stored["sku"].encode()) == 128
    assert stored["description"] == "é" * 255
    assert stored["__sync_key"] == "90915ea39599f032a3d657976fe40a30"


def test_nul_byte(harness):
    harness.add_account("acct_a", case_rows("nul-byte"))

    harness.sync("acct_a")

    (stored,) = harness.rows("acct_a")
    assert stored["description"] == "Bullseye Small"
    assert stored["__sync_key"] == "82dcd69cce5227c5ea8a7192624f1ea6"


def test_missing_timestamp(harness):
    harness.add_account("acct_a", case_rows("missing-timestamp"))

    result = harness.sync("acct_a")

    assert result.success
    (stored,) = harness.rows("acct_a")
    assert stored["notification_last_added_at"] is None


def test_sync_key_recomputes_in_sql_for_every_storefront_row(harness, database_url):
    harness.add_account("outdoor", storefront_rows("outdoor"))
    harness.sync("outdoor")

    stored = harness.rows("outdoor")
    assert len(stored) == 509
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM back_in_stock.notifications "
            "WHERE md5(concat(sku, product_id, variant_no)) <> __sync_key"
        )
        assert cursor.fetchone() == (0,)


def test_ids_of_any_size_that_bigint_holds_stay_exact():
    largest = 2**63 - 1
    frame = shape(row(product_id=largest, variant_no=2**53 + 1), row(product_id=None))

    assert frame["product_id"].tolist() == [largest]
    assert frame["variant_no"].tolist() == [2**53 + 1]
    assert str(frame["variant_no"].dtype) == "Int64"


def test_ids_written_as_text_or_whole_decimals_are_read_exactly():
    shaped = shape_rows(
        [row(product_id="280917149", variant_no=Decimal("661821745.0"))],
        "acct_a",
        "src-a",
        SYNCED_AT,
    )

    assert shaped.frame["product_id"].tolist() == [280917149]
    assert shaped.frame["__sync_key"].tolist() == ["82dcd69cce5227c5ea8a7192624f1ea6"]


def test_ids_that_no_bigint_holds_are_skipped_and_counted():
    shaped = shape_rows(
        [row(product_id=2**63), row(variant_no=1.5), row(variant_no=None), row()],
        "acct_a",
        "src-a",
        SYNCED_AT,
    )

    assert shaped.rows_skipped == 3
    assert shaped.invalid_values == {"product_id": 1, "variant_no": 1}
    assert len(shaped.frame) == 1


def test_counts_out_of_integer_range_become_null_and_are_counted():
    shaped = shape_rows(
        [row(notifications_count=2**31), row(variant_no=2, notifications_count="7")],
        "acct_a",
        "src-a",
        SYNCED_AT,
    )

    assert shaped.frame["notifications_count"].tolist() == [pd.NA, 7]
    assert shaped.invalid_values == {"notifications_count": 1}


def test_money_is_exact_text_never_a_float():
    frame = shape(
        row(variant_no=1, unit_price="49"),
        row(variant_no=2, unit_price=" 0.10 "),
        row(variant_no=3, unit_price=Decimal("19.990")),
        row(variant_no=4, unit_price="12,50"),
        row(variant_no=5, unit_price="NaN"),
        row(variant_no=6, unit_price="123456789012345678901234.5678"),
    )

    assert frame["unit_price"].tolist() == [
        Decimal("49"),
        Decimal("0.10"),
        Decimal("19.990"),
        None,
        None,
        Decimal("123456789012345678901234.5678"),
    ]


def test_lone_surrogates_are_replaced_and_nothing_else_changes():
    text = "tab\there\\back\nnl \"q\" 'a' \u2122 \U0001f600 \x01"
    frame = shape(row(description=text + "\ud800"), row(variant_no=2, sku="\udfff-x"))

    assert frame["description"].tolist() == [text + "\ufffd", BASE_ROW["description"]]
    assert frame["sku"].tolist() == ["bullseye-01", "\ufffd-x"]


def test_times_with_and_without_fractions_or_offsets_are_utc():
    frame = shape(
        row(variant_no=1, notification_last_added_at="2015-03-23T13:34:41.084Z"),
        row(variant_no=2, notification_last_added_at="2015-03-23T15:34:41+02:00"),
        row(variant_no=3, notification_last_added_at="2015-03-23T13:34:41"),
        row(variant_no=4, notification_last_added_at="not a time"),
    )

    assert frame["notification_last_added_at"].tolist()[:3] == [
        pd.Timestamp("2015-03-23T13:34:41.084Z"),
        pd.Timestamp("2015-03-23T13:34:41Z"),
        pd.Timestamp("2015-03-23T13:34:41Z"),
    ]
    assert pd.isna(frame["notification_last_added_at"].iloc[3])


def test_numbers_only_in_ascii_digits_and_within_numeric_are_taken():
    shaped = shape_rows(
        [
            row(variant_no=1, unit_price="1e999999"),
            row(variant_no=2, unit_price="1e-20000"),
            row(variant_no=3, unit_price="\u0661\u0662\u0663"),
            row(variant_no=4, unit_price="1e3"),
            row(variant_no=5, unit_price=Decimal("NaN")),
            row(variant_no="\uff11\uff12"),
            row(variant_no="1e3"),
            row(variant_no=Decimal("1E+3")),
        ],
        "acct_a",
        "src-a",
        SYNCED_AT,
    )

    prices = shaped.frame["unit_price"].tolist()
    assert prices == [None, None, None, Decimal("1e3"), None, Decimal("49.00")]
    assert shaped.frame["variant_no"].tolist() == [1, 2, 3, 4, 5, 1000]
    assert shaped.invalid_values == {"unit_price": 4, "variant_no": 2}
    assert shaped.rows_skipped == 2


def test_a_price_numeric_cannot_hold_is_null_not_a_failed_sync(harness):
    harness.add_account("acct_a", [row(unit_price="1e999999"), row(variant_no=2)])

    result = harness.sync("acct_a")

    assert result.success
    stored = {row["variant_no"]: row["unit_price"] for row in harness.rows("acct_a")}
    assert stored == {661821745: None, 2: Decimal("49.00")}
