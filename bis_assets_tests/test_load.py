"""Loading into PostgreSQL: upserts, re-runs, tenants, races and vanished rows."""

from datetime import UTC, datetime, timedelta

import psycopg2
import pytest
from psycopg2 import sql

from bis_assets.api_server.catalog import storefront_names, storefront_rows
from bis_assets.errors import WarehouseError
from bis_assets.transform import shape_rows
from bis_assets.warehouse import TableName, connect, ensure_table, load, read_accounts
from bis_assets_tests.harness import case, case_rows, run_at_once, table_rows

SYNCED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TABLE = TableName()


def frame_of(rows: list[dict], account_id: str = "acct_a", synced_at=SYNCED_AT):
    return shape_rows(rows, account_id, f"src-{account_id}", synced_at).frame


def load_rows(database_url: str, rows: list[dict], account_id: str = "acct_a", **options):
    frame = frame_of(rows, account_id, options.pop("synced_at", SYNCED_AT))
    with connect(database_url) as connection:
        ensure_table(connection, TABLE)
        return load(connection, TABLE, frame, **options)


def materialization(result):
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    return {key: value.value for key, value in metadata.items()}


def test_same_key_twice_in_one_load(harness):
    harness.add_account("acct_a", case_rows("same-key-twice-in-one-load"))

    harness.sync("acct_a")

    (stored,) = harness.rows("acct_a")
    assert stored["unsent_notifications_count"] == 224
    assert stored["notification_last_added_at"].isoformat() == "2015-03-23T14:00:00+00:00"


def test_rerun_is_idempotent(harness, database_url):
    first, second = case("rerun-is-idempotent")["runs"]
    harness.add_account(first["partition"], first["body"])
    harness.sync("acct_a")
    before = table_rows(database_url)

    harness.add_account(second["partition"], second["body"])
    result = harness.sync("acct_a")

    counts = materialization(result)
    assert (counts["rows_inserted"], counts["rows_updated"], counts["rows_unchanged"]) == (0, 0, 3)
    assert table_rows(database_url) == before  # not even __synced_at moved
    assert len(before) == 3


def test_same_variant_two_accounts(harness):
    for run in case("same-variant-two-accounts")["runs"]:
        harness.add_account(run["partition"], run["body"])
        harness.sync(run["partition"])

    stored = harness.rows()
    assert len(stored) == 2
    assert {row["_account_id"]: row["unsent_notifications_count"] for row in stored} == {
        "acct_a": 5,
        "acct_b": 9,
    }


def test_single_run_backfill(harness):
    given = case("single-run-backfill")
    for account_id, rows in given["partitions"].items():
        harness.add_account(account_id, rows)

    result = harness.sync("acct_a", "acct_b")

    assert result.success
    assert [row["__sync_key"] for row in harness.rows("acct_a")] == [
        "82dcd69cce5227c5ea8a7192624f1ea6"
    ]
    assert [row["__sync_key"] for row in harness.rows("acct_b")] == [
        "5cc2bee5af2a7dbc8fd304e6ae2face5"
    ]
    checks = result.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks)


def test_one_run_of_several_accounts_counts_each_partition(harness):
    harness.add_account("acct_a", storefront_rows("outdoor"))
    harness.add_account("acct_b", storefront_rows("outdoor")[:10])
    harness.sync("acct_a", "acct_b")
    harness.add_account("acct_b", storefront_rows("outdoor")[:12])

    result = harness.sync("acct_a", "acct_b")

    observed = {
        event.partition: {name: value.value for name, value in event.metadata.items()}
        for event in (
            record.asset_observation_data.asset_observation
            for record in result.get_asset_observation_events()
        )
    }
    run_counts = materialization(result)
    assert observed == {
        "acct_a": {
            "rows_inserted": 0, "rows_updated": 0, "rows_unchanged": 509,
            "rows_marked_deleted": 0, "dagster/row_count": 509,
        },
        "acct_b": {
            "rows_inserted": 2, "rows_updated": 0, "rows_unchanged": 10,
            "rows_marked_deleted": 0, "dagster/row_count": 12,
        },
    }
    assert (run_counts["rows_inserted"], run_counts["rows_unchanged"]) == (2, 519)


def test_first_runs_race(database_url):
    def first_sync(run: dict):
        def job() -> None:
            with connect(database_url) as connection:
                ensure_table(connection, TABLE)
                load(connection, TABLE, frame_of(run["body"], run["partition"]))

        return job

    errors = run_at_once([first_sync(run) for run in case("first-runs-race")["runs_at_once"]])

    assert errors == []
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'back_in_stock'"
        )
        assert cursor.fetchone() == (1,)
    stored = table_rows(database_url)
    assert {row["_account_id"]: [row["__sync_key"]] for row in stored} == {
        "acct_a": ["82dcd69cce5227c5ea8a7192624f1ea6"],
        "acct_b": ["5cc2bee5af2a7dbc8fd304e6ae2face5"],
    }


def test_three_storefronts_land_whole_and_a_rerun_changes_nothing(harness, database_url):
    for name in storefront_names():
        harness.add_account(name, storefront_rows(name))

    first = {name: materialization(harness.sync(name)) for name in storefront_names()}
    stored_after_first = table_rows(database_url)
    second = {name: materialization(harness.sync(name)) for name in storefront_names()}

    assert {name: counts["rows_inserted"] for name, counts in first.items()} == {
        "stanley1913": 1310,
        "camerarigz": 1615,
        "outdoor": 509,
    }
    assert len(stored_after_first) == 3434
    assert all(counts["rows_inserted"] == counts["rows_updated"] == 0 for counts in second.values())
    assert table_rows(database_url) == stored_after_first


def test_text_survives_copy_byte_for_byte(database_url):
    awkward = [
        "tab\tnew\nline\rreturn\\backslash\\N",
        '"quoted" \'single\' , ; |',
        "\\.",
        "",
        "\u2122 \u2019 \u00d7 \u00a3 \U0001f600 \u200b\u00a0",
        "\x01\x07\x1b\x7f",
    ]
    rows = [
        case_rows("nul-byte")[0] | {"variant_no": number, "sku": text, "description": text}
        for number, text in enumerate(awkward, start=1)
    ]
    rows.append(rows[0] | {"variant_no": 99, "sku": None, "description": None})

    load_rows(database_url, rows)

    stored = {row["variant_no"]: row for row in table_rows(database_url)}
    assert [stored[number]["description"] for number in range(1, 7)] == awkward
    assert [stored[number]["sku"] for number in range(1, 7)] == awkward
    assert stored[99]["sku"] is None and stored[99]["description"] is None


def test_instants_are_stored_right_whatever_the_session_time_zone(database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
        cursor.execute(
            sql.SQL("ALTER DATABASE {} SET TimeZone = 'Pacific/Chatham'").format(
                sql.Identifier(name)
            )
        )
    row = case_rows("nul-byte")[0] | {"notification_last_added_at": "2015-03-23T15:34:41+02:00"}

    load_rows(database_url, [row])

    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('TimeZone'), "
            "to_char(notification_last_added_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'), "
            "to_char(__synced_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
            "FROM back_in_stock.notifications"
        )
        assert cursor.fetchone() == (
            "Pacific/Chatham",
            "2015-03-23 13:34:41",
            "2026-01-02 03:04:05",
        )


def test_vanished_rows_are_marked_then_cleared_when_they_return(database_url):
    rows = storefront_rows("outdoor")[:10]
    later = SYNCED_AT + timedelta(days=1)
    load_rows(database_url, rows, complete_accounts=["acct_a"])

    counts = load_rows(database_url, rows[:8], complete_accounts=["acct_a"], synced_at=later)
    marked = {r["sku"] for r in table_rows(database_url) if r["__deleted_at"] == later}
    back = load_rows(database_url, rows, complete_accounts=["acct_a"], synced_at=later)

    assert counts.total.marked_deleted == 2
    assert marked == {rows[8]["sku"], rows[9]["sku"]}
    assert (back.total.updated, back.total.inserted) == (2, 0)
    assert all(row["__deleted_at"] is None for row in table_rows(database_url))


def test_a_sync_that_would_mark_most_rows_is_refused_whole(database_url):
    rows = storefront_rows("outdoor")[:10]
    load_rows(database_url, rows, complete_accounts=["acct_a"])
    before = table_rows(database_url)
    changed = [rows[0] | {"unsent_notifications_count": 999}]

    with pytest.raises(WarehouseError, match="no longer returns 9 of the 10 rows") as refused:
        load_rows(database_url, changed, complete_accounts=["acct_a"], max_deleted_share=0.5)

    assert "acct_a" in str(refused.value) and "nothing was changed" in str(refused.value)
    assert table_rows(database_url) == before


def test_a_failure_midway_leaves_the_table_as_it_was(database_url):
    rows = storefront_rows("outdoor")[:20]
    load_rows(database_url, rows)
    before = table_rows(database_url)
    frame = frame_of([row | {"unsent_notifications_count": 7} for row in rows])
    frame.loc[15, "unit_price"] = "not a number"  # COPY rejects it after 15 good rows

    with connect(database_url) as connection, pytest.raises(psycopg2.DataError):
        load(connection, TABLE, frame)

    assert table_rows(database_url) == before


def test_a_table_made_without_the_key_gets_a_clear_error(database_url):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA back_in_stock")
        cursor.execute(
            "CREATE TABLE back_in_stock.notifications AS "
            "SELECT * FROM (VALUES (1)) AS t(x) WHERE false"
        )
    with connect(database_url) as connection, pytest.raises(WarehouseError, match="without"):
        ensure_table(connection, TABLE)

    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("DROP TABLE back_in_stock.notifications")
    load_rows(database_url, storefront_rows("outdoor")[:3])
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("ALTER TABLE back_in_stock.notifications DROP CONSTRAINT notifications_pkey")
    with connect(database_url) as connection, pytest.raises(WarehouseError, match="ADD PRIMARY"):
        ensure_table(connection, TABLE)


def test_reading_back_gives_the_frame_that_was_loaded(database_url):
    frame = frame_of(case_rows("missing-and-empty-numbers") + case_rows("null-sku"))
    load_rows(database_url, case_rows("missing-and-empty-numbers") + case_rows("null-sku"))

    with connect(database_url) as connection:
        back = read_accounts(connection, TABLE, ["acct_a"])

    expected = frame.sort_values("__sync_key").reset_index(drop=True)
    assert back.drop(columns="__deleted_at").equals(expected)


def test_new_rows_cannot_dilute_a_wipe_of_the_old_ones(database_url):
    rows = storefront_rows("outdoor")[:10]
    load_rows(database_url, rows, complete_accounts=["acct_a"])
    before = table_rows(database_url)
    every_key_changed = [row | {"sku": f"{row['sku']}-renamed"} for row in rows]

    with pytest.raises(WarehouseError, match="no longer returns 10 of the 10 rows"):
        load_rows(
            database_url, every_key_changed, complete_accounts=["acct_a"], max_deleted_share=0.5
        )

    assert table_rows(database_url) == before


def test_a_warehouse_not_in_utf8_is_refused_clearly(latin1_database_url):
    with connect(latin1_database_url) as connection:
        with pytest.raises(WarehouseError, match="encoded LATIN1; store the table"):
            ensure_table(connection, TABLE)


def test_a_table_of_someone_elses_fails_the_sync_clearly_before_any_request(
    harness, database_url
):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA back_in_stock")
        cursor.execute("CREATE TABLE back_in_stock.notifications (x int)")
    harness.add_account("acct_a", storefront_rows("outdoor")[:5])

    error = harness.permanent_error("acct_a")

    assert str(error).startswith("table back_in_stock.notifications exists without columns")
    assert harness.server.request_count == 0
