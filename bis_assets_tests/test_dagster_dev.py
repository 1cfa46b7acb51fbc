"""``dagster dev`` on PostgreSQL storage: syncs through the daemon survive a restart."""

import time
from collections.abc import Callable
from typing import TypeVar

import requests

from bis_assets.api_server import Fault
from bis_assets.pools import API_POOL
from bis_assets_tests.dagster_dev import (
    ACCOUNTS,
    ASSET_KEY,
    CHECK_NAMES,
    RUN_TIMEOUT,
    DagsterDev,
    DagsterSite,
    drop_connections,
    ended,
    launch_sync,
    runs,
    wait_for,
)

ASSET_STEP = "back_in_stock_notifications"
T = TypeVar("T")

CHECK_EXECUTIONS_QUERY = """
query($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 20) {
    runId status partition evaluation { success severity }
  }
}
"""

SET_POOL_LIMIT = """
mutation($key: String!, $limit: Int!) { setConcurrencyLimit(concurrencyKey: $key, limit: $limit) }
"""

DELETE_POOL_LIMIT = """
mutation($key: String!) { deleteConcurrencyLimit(concurrencyKey: $key) }
"""

INSTANCE_QUERY = """
query {
  instance {
    runQueueConfig { maxConcurrentRuns isOpConcurrencyAware tagConcurrencyLimitsYaml }
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

    queue = instance["runQueueConfig"]
    assert (queue["maxConcurrentRuns"], queue["isOpConcurrencyAware"]) == (8, True)
    assert queue["tagConcurrencyLimitsYaml"].split() == [
        "-", "key:", "dagster/partition", "limit:", "1",
        "value:", "applyLimitPerUniqueValue:", "true",
    ]
    assert instance["poolConfig"] == {"defaultPoolLimit": 4}
    assert instance["concurrencyLimit"] == {"slotCount": 4, "usingDefaultLimit": True}


def overlaps(intervals: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Each interval that starts before the one before it (in start order) ended."""
    ordered = sorted(intervals)
    pairs = zip(ordered, ordered[1:], strict=False)

    return [later for earlier, later in pairs if later[0] < earlier[1]]


def test_the_pool_and_the_account_limit_hold_under_load(dagster_site: DagsterSite) -> None:
    dev, api = dagster_site.dev, dagster_site.api
    # Short slow pages, so each sync takes seconds, and a pool of one slot:
    # unlimited, the three syncs launched together would run side by side.
    api.latency, api.max_per_page = 0.2, 25
    dev.graphql(SET_POOL_LIMIT, key=API_POOL, limit=1)
    try:
        launched_at = time.time()
        accounts = [ACCOUNTS[1], ACCOUNTS[0], ACCOUNTS[1]]
        run_ids = [launch_sync(dev, account) for account in accounts]
        launch_spread = time.time() - launched_at
        details = wait_for("the three syncs", 3 * RUN_TIMEOUT, lambda: ended(dev, run_ids))
    finally:
        dev.graphql(DELETE_POOL_LIMIT, key=API_POOL)
        api.latency, api.max_per_page = 0.0, 250

    assert [run["status"] for run in details] == ["SUCCESS"] * 3
    sync_steps = [
        (step["startTime"], step["endTime"])
        for run in details
        for step in run["stepStats"]
        if step["stepKey"] == ASSET_STEP
    ]
    assert len(sync_steps) == 3
    assert min(end - start for start, end in sync_steps) > launch_spread
    assert overlaps(sync_steps) == []  # the pool's one slot, taken in turn
    same_account_runs = [
        (run["startTime"], run["endTime"])
        for run, account in zip(details, accounts, strict=True)
        if account == ACCOUNTS[1]
    ]
    assert overlaps(same_account_runs) == []  # the second waited in the queue


def _when_answering(probe: Callable[[], T]) -> Callable[[], T | None]:
    """``probe``, giving None while the webserver answers a query with an error.

    A query whose storage session was ended fails; the next one opens a new
    session, as a person reloading the page would see.
    """

    def answer() -> T | None:
        try:
            return probe()
        except requests.HTTPError:
            return None

    return answer


def _statuses(dev: DagsterDev) -> dict[str, str]:
    return {run["runId"]: run["status"] for run in runs(dev)}


def test_dropped_storage_connections_fail_no_run(dagster_site: DagsterSite) -> None:
    dev, api = dagster_site.dev, dagster_site.api
    before = _statuses(dev)
    api.inject(Fault(200, hang=5.0, page=1, account=ACCOUNTS[0]))
    stalled_run = launch_sync(dev, ACCOUNTS[0])
    wait_for("the sync to wait on its first page", RUN_TIMEOUT, lambda: api.hanging_requests)

    # While the run waits on the API, every storage session is ended a few
    # times over: the webserver's, the daemon's and any of the run's own.
    dropped = 0
    for _ in range(10):
        dropped += drop_connections(dagster_site.storage_admin_url, dagster_site.storage_database)
        time.sleep(0.2)
    (stalled,) = wait_for(
        "the stalled sync", RUN_TIMEOUT, _when_answering(lambda: ended(dev, [stalled_run]))
    )
    later_run = launch_sync(dev, ACCOUNTS[1])
    (later,) = wait_for("a sync launched after", RUN_TIMEOUT, lambda: ended(dev, [later_run]))
    after = _statuses(dev)

    assert dropped > 0
    assert (stalled["status"], later["status"]) == ("SUCCESS", "SUCCESS")
    assert after == before | {stalled_run: "SUCCESS", later_run: "SUCCESS"}
