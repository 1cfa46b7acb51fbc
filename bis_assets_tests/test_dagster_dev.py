"""``dagster dev`` on PostgreSQL storage: syncs through the daemon survive a restart."""

from bis_assets_tests.dagster_dev import (
    ACCOUNTS,
    ASSET_KEY,
    CHECK_NAMES,
    DagsterSite,
    runs,
)

CHECK_EXECUTIONS_QUERY = """
query($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 20) {
    runId status partition evaluation { success severity }
  }
}
"""

INSTANCE_QUERY = """
query {
  instance {
    runQueueConfig { maxConcurrentRuns isOpConcurrencyAware }
    poolConfig { defaultPoolLimit }
    concurrencyLimit(concurrencyKey: "back_in_stock_api") { slotCount usingDefaultLimit }
  }
}
"""


def check_results(site: DagsterSite) -> dict[str, set[tuple]]:
    """Each check's executions as (run id, status, partition, success)."""
    results = {}
    for name in CHECK_NAMES:
        executions = site.dev.graphql(CHECK_EXECUTIONS_QUERY, key=ASSET_KEY, name=name)
        results[name] = {
            (
                execution["runId"],
                execution["status"],
                execution["partition"],
                (execution["evaluation"] or {}).get("success"),
            )
            for execution in executions["assetCheckExecutions"]
        }

    return results


def test_runs_and_checks_survive_a_restart(dagster_site: DagsterSite) -> None:
    before = runs(dagster_site.dev)
    checks_before = check_results(dagster_site)

    dagster_site.dev.stop()
    dagster_site.dev.start()
    after = runs(dagster_site.dev)
    checks_after = check_results(dagster_site)

    assert after == before
    assert sorted(run["status"] for run in after) == ["SUCCESS"] * 3
    first_syncs = sorted(
        (run["tags"]["dagster/partition"], run["tags"]["dagster/run_key"])
        for run in after
        if run["tags"].get("dagster/sensor_name") == "accounts_sensor"
    )
    assert first_syncs == sorted(
        (account, f"first-sync:{account}:1") for account in ACCOUNTS
    )
    (backfill_run,) = [
        run for run in after if run["tags"].get("dagster/backfill") == dagster_site.backfill_id
    ]
    assert backfill_run["tags"]["dagster/asset_partition_range_start"] == ACCOUNTS[0]
    assert backfill_run["tags"]["dagster/asset_partition_range_end"] == ACCOUNTS[-1]

    assert checks_after == checks_before
    # The single run of both accounts filed each account's result under its
    # partition, and one for the run as a whole.
    backfill_checks = {
        name: {(partition, status) for run_id, status, partition, _ in executions
               if run_id == backfill_run["runId"]}
        for name, executions in checks_after.items()
    }
    expected = {(None, "SUCCEEDED")} | {(account, "SUCCEEDED") for account in ACCOUNTS}
    assert backfill_checks == {name: expected for name in CHECK_NAMES}


def test_the_instance_limits_runs_and_api_steps(dagster_site: DagsterSite) -> None:
    instance = dagster_site.dev.graphql(INSTANCE_QUERY)["instance"]

    assert instance["runQueueConfig"] == {"maxConcurrentRuns": 8, "isOpConcurrencyAware": True}
    assert instance["poolConfig"] == {"defaultPoolLimit": 4}
    assert instance["concurrencyLimit"] == {"slotCount": 4, "usingDefaultLimit": True}
