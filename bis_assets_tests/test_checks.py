"""The asset checks, run by Dagster on real syncs into a real PostgreSQL."""

import copy

import psycopg2
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetSelection,
    Definitions,
    ExecuteInProcessResult,
    define_asset_job,
    materialize,
)

from bis_assets.assets import back_in_stock_notifications
from bis_assets.checks import MAX_VANISHED_SHARE, NOTIFICATIONS_CHECKS
from bis_assets_tests.harness import SyncHarness, case, case_rows

COLLIDING_KEY = "82dcd69cce5227c5ea8a7192624f1ea6"
EVERY_CHECK = {
    "sync_key_present_and_unique",
    "sync_key_matches_columns",
    "sync_key_collisions",
    "row_count_matches_sync",
    "notifications_count_adds_up",
    "rows_skipped",
    "rows_vanished",
}


def run(harness: SyncHarness, account_id: str) -> ExecuteInProcessResult:
    """Sync ``account_id`` in one run with every check."""
    return materialize(
        [back_in_stock_notifications, *NOTIFICATIONS_CHECKS],
        partition_key=account_id,
        resources=harness.resources(),
        instance=harness.instance,
        raise_on_error=False,
    )


def run_checks(harness: SyncHarness, account_id: str, *names: str) -> ExecuteInProcessResult:
    """Run only the named checks on the account, as "Execute checks" does in the UI."""
    keys = [AssetCheckKey(back_in_stock_notifications.key, name) for name in names]
    job = define_asset_job("checks_only", selection=AssetSelection.checks(*keys))
    definitions = Definitions(
        assets=[back_in_stock_notifications],
        asset_checks=list(NOTIFICATIONS_CHECKS),
        jobs=[job],
        resources=harness.resources(),
    )

    # A job of checks alone has no asset to take a partitions definition from,
    # so the partition is given as the run tag the UI sets.
    return definitions.resolve_job_def(job.name).execute_in_process(
        tags={"dagster/partition": account_id},
        instance=harness.instance,
        raise_on_error=False,
    )


def evaluations(result: ExecuteInProcessResult) -> dict[str, AssetCheckEvaluation]:
    return {check.check_name: check for check in result.get_asset_check_evaluations()}


def execute(database_url: str, statement: str, params: tuple = ()) -> None:
    connection = psycopg2.connect(database_url)
    with connection, connection.cursor() as cursor:
        cursor.execute(statement, params)
    connection.close()


def plant_copy_of_row(database_url: str, key: str, into_account: str) -> None:
    """Insert a copy of the row with ``key`` as a row of ``into_account``."""
    execute(
        database_url,
        "INSERT INTO back_in_stock.notifications "
        "SELECT (row).* FROM (SELECT n AS row FROM back_in_stock.notifications n "
        "WHERE __sync_key = %s LIMIT 1) one",
        (key,),
    )
    execute(
        database_url,
        "UPDATE back_in_stock.notifications SET _account_id = %s WHERE ctid = "
        "(SELECT max(ctid) FROM back_in_stock.notifications WHERE __sync_key = %s)",
        (into_account, key),
    )


def test_check_sees_only_its_partition(harness: SyncHarness) -> None:
    rows = case("check-sees-only-its-partition")["materialize"]["acct_a"]
    harness.add_account("acct_a", rows)
    harness.add_account("acct_b", [])  # a partition that is never materialized

    synced = evaluations(run(harness, "acct_a"))

    assert set(synced) == EVERY_CHECK
    assert all(check.passed for check in synced.values()), {
        name: check.description for name, check in synced.items() if not check.passed
    }
    assert synced["row_count_matches_sync"].metadata["rows_in_table"].value == 2
    assert synced["rows_vanished"].metadata["accounts"].value == ["acct_a"]
    key = harness.rows("acct_a")[0]["__sync_key"]

    # Without the primary key the table can hold what the upsert never writes.
    execute(
        harness.database_url,
        "ALTER TABLE back_in_stock.notifications DROP CONSTRAINT notifications_pkey",
    )
    plant_copy_of_row(harness.database_url, key, "acct_b")
    plant_copy_of_row(harness.database_url, key, "acct_b")
    unique = "sync_key_present_and_unique"

    other_partition = evaluations(run_checks(harness, "acct_a", unique))
    assert other_partition[unique].passed

    plant_copy_of_row(harness.database_url, key, "acct_a")
    planted = evaluations(run_checks(harness, "acct_a", unique))[unique]

    assert not planted.passed
    assert planted.severity == AssetCheckSeverity.ERROR
    assert planted.metadata["bad_keys"].value == [key]
    assert planted.description == f"1 __sync_key NULL or repeated: {key}"
    assert planted.metadata["accounts"].value == ["acct_a"]


def test_key_collision(harness: SyncHarness) -> None:
    harness.add_account("acct_a", case_rows("key-collision"))

    result = run(harness, "acct_a")

    assert result.success
    collision = evaluations(result)["sync_key_collisions"]
    assert not collision.passed
    assert collision.severity == AssetCheckSeverity.WARN
    assert collision.description == (
        f"2 distinct (sku, product_id, variant_no) share 1 __sync_key: {COLLIDING_KEY}"
    )
    assert collision.metadata["colliding_identities"].value == 2
    assert collision.metadata["colliding_keys"].value == 1
    assert collision.metadata["colliding_key_values"].value == [COLLIDING_KEY]
    # The last row read of the key is the one the table keeps.
    assert [row["sku"] for row in harness.rows("acct_a")] == ["bullseye-0"]
    others = evaluations(result)
    assert all(others[name].passed for name in EVERY_CHECK - {"sync_key_collisions"})


def test_soft_expectations_warn_with_value_and_threshold(harness: SyncHarness) -> None:
    template = case_rows("key-collision")[0]
    rows = [dict(template, sku=f"sku-{n}", variant_no=1000 + n) for n in range(20)]
    harness.add_account("acct_a", rows)
    first = evaluations(run(harness, "acct_a"))
    assert all(check.passed for check in first.values())

    changed = copy.deepcopy(rows[3:])  # three of twenty rows leave the report
    changed[0]["notifications_count"] = changed[0]["unsent_notifications_count"] + 5
    changed.append(dict(template, sku="no-ids", product_id=None))
    harness.add_account("acct_a", changed)
    checks = evaluations(run(harness, "acct_a"))

    counts = checks["notifications_count_adds_up"]
    assert (counts.passed, counts.severity) == (False, AssetCheckSeverity.WARN)
    assert counts.metadata["mismatched_rows"].value == 1
    assert counts.metadata["threshold"].value == 0
    skipped = checks["rows_skipped"]
    assert (skipped.passed, skipped.severity) == (False, AssetCheckSeverity.WARN)
    assert skipped.metadata["rows_skipped"].value == 1
    assert skipped.metadata["threshold"].value == 0
    vanished = checks["rows_vanished"]
    assert (vanished.passed, vanished.severity) == (False, AssetCheckSeverity.WARN)
    assert vanished.metadata["rows_vanished"].value == 3
    assert vanished.metadata["share"].value == 0.15
    assert vanished.metadata["threshold_share"].value == MAX_VANISHED_SHARE
    assert vanished.description == "3 rows (15%) vanished in the latest sync"
    assert checks["row_count_matches_sync"].passed
    assert checks["row_count_matches_sync"].metadata["rows_in_table"].value == 17


def test_row_count_check_fails_when_the_table_lost_rows(harness: SyncHarness) -> None:
    harness.add_account("acct_a", case("check-sees-only-its-partition")["materialize"]["acct_a"])
    assert run(harness, "acct_a").success

    execute(harness.database_url, "DELETE FROM back_in_stock.notifications WHERE sku = %s",
            ("bullseye-02",))
    check = evaluations(run_checks(harness, "acct_a", "row_count_matches_sync"))

    assert set(check) == {"row_count_matches_sync"}
    counted = check["row_count_matches_sync"]
    assert not counted.passed
    assert counted.severity == AssetCheckSeverity.ERROR
    assert counted.description == "the sync produced 2 rows, the table holds 1"
    assert counted.metadata["rows_synced"].value == 2
    assert counted.metadata["rows_in_table"].value == 1


def test_a_run_of_two_accounts_files_each_result_under_its_partition(
    harness: SyncHarness,
) -> None:
    harness.add_account("acct_a", case_rows("key-collision"))
    harness.add_account("acct_b", case("check-sees-only-its-partition")["materialize"]["acct_a"])

    result = materialize(
        [back_in_stock_notifications, *NOTIFICATIONS_CHECKS],
        tags={
            "dagster/asset_partition_range_start": "acct_a",
            "dagster/asset_partition_range_end": "acct_b",
        },
        resources=harness.resources(),
        instance=harness.instance,
    )

    by_partition = {
        (check.check_name, check.partition): check
        for check in result.get_asset_check_evaluations()
    }
    assert {partition for _, partition in by_partition} == {"acct_a", "acct_b", None}
    assert all((name, "acct_b") in by_partition for name in EVERY_CHECK)
    assert all(by_partition[(name, "acct_b")].passed for name in EVERY_CHECK)
    assert not by_partition[("sync_key_collisions", "acct_a")].passed
    run_wide = by_partition[("sync_key_collisions", None)]
    assert (run_wide.passed, run_wide.severity) == (False, AssetCheckSeverity.WARN)
    assert run_wide.description == (
        f"acct_a: 2 distinct (sku, product_id, variant_no) share 1 __sync_key: {COLLIDING_KEY}"
    )
    assert run_wide.metadata["failed_accounts"].value == ["acct_a"]
    counted = by_partition[("row_count_matches_sync", "acct_b")]
    assert counted.metadata["rows_in_table"].value == 2
    assert counted.target_materialization_data.run_id == result.run_id
