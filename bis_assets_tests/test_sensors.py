"""The sensors, tick by tick: run requests, run keys, cursors and partition changes."""

import itertools
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    AddDynamicPartitionsRequest,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DeleteDynamicPartitionsRequest,
    SensorResult,
    SkipReason,
    build_run_status_sensor_context,
    build_sensor_context,
    instance_for_test,
)

from bis_assets import sensors
from bis_assets.accounts import AccountsFileError
from bis_assets.api_server import BackInStockServer, Fault
from bis_assets.partitions import account_partitions
from bis_assets.resources import AccountsResource, BackInStockResource
from bis_assets.sensors import (
    accounts_of_run,
    accounts_sensor,
    report_change_sensor,
    sync_failure_sensor,
)
from bis_assets_tests.conftest import write_accounts_file
from bis_assets_tests.harness import SyncHarness, case

PARTITIONS = account_partitions.name


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    # A context given resources rebuilds its instance from a reference, which
    # an ephemeral instance lacks.
    with instance_for_test() as instance:
        yield instance


def accounts_file(tmp_path: Path, *account_ids: str, base_url: str = "") -> AccountsResource:
    tokens = {account_id: f"BIS_TEST_TOKEN_{account_id.upper()}" for account_id in account_ids}
    path = write_accounts_file(tmp_path / "accounts.yaml", tokens, base_url)

    return AccountsResource(path=str(path))


def tick(sensor, instance, cursor: str | None, **resources) -> SensorResult | SkipReason:
    """One evaluation, then what the daemon does with its partition requests."""
    context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = sensor(context)

    for request in getattr(result, "dynamic_partitions_requests", None) or []:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, request.partition_keys)
        else:
            assert isinstance(request, DeleteDynamicPartitionsRequest)
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)

    return result


def requested(result: SensorResult) -> list[tuple[str, str]]:
    return [(request.partition_key, request.run_key) for request in result.run_requests]


def start_run(instance: DagsterInstance, account_id: str) -> None:
    instance.add_run(
        DagsterRun(
            job_name="sync_back_in_stock",
            run_id=str(uuid.uuid4()),
            status=DagsterRunStatus.STARTED,
            tags={"dagster/partition": account_id},
        )
    )


def test_accounts_sensor_follows_the_file(instance, tmp_path: Path) -> None:
    first = tick(accounts_sensor, instance, None, accounts=accounts_file(tmp_path, "a", "b"))

    assert requested(first) == [("a", "first-sync:a:1"), ("b", "first-sync:b:1")]
    assert instance.get_dynamic_partitions(PARTITIONS) == ["a", "b"]
    assert json.loads(first.cursor) == {"generation": 1, "known": ["a", "b"]}

    same = accounts_file(tmp_path, "a", "b")
    unchanged = tick(accounts_sensor, instance, first.cursor, accounts=same)
    assert isinstance(unchanged, SkipReason)
    assert unchanged.skip_message == "the 2 accounts and their partitions agree"

    swapped = accounts_file(tmp_path, "a", "c")
    changed = tick(accounts_sensor, instance, first.cursor, accounts=swapped)
    assert requested(changed) == [("c", "first-sync:c:2")]
    assert instance.get_dynamic_partitions(PARTITIONS) == ["a", "c"]
    assert json.loads(changed.cursor) == {"generation": 2, "known": ["a", "c"]}

    # Put back, b gets a new first sync: its old run key cannot block it.
    again = accounts_file(tmp_path, "a", "c", "b")
    back = tick(accounts_sensor, instance, changed.cursor, accounts=again)
    assert requested(back) == [("b", "first-sync:b:3")]


def test_a_retried_tick_asks_for_the_same_runs(instance, tmp_path: Path) -> None:
    first = tick(accounts_sensor, instance, None, accounts=accounts_file(tmp_path, "a"))
    grown = accounts_file(tmp_path, "a", "b")
    second = tick(accounts_sensor, instance, first.cursor, accounts=grown)

    # The daemon added b's partition but stopped before it stored the cursor.
    retried = tick(accounts_sensor, instance, first.cursor, accounts=grown)

    assert requested(retried) == requested(second) == [("b", "first-sync:b:2")]
    assert retried.dynamic_partitions_requests == []
    assert retried.cursor == second.cursor


def test_removal_waits_for_runs_in_flight(instance, tmp_path: Path) -> None:
    first = tick(accounts_sensor, instance, None, accounts=accounts_file(tmp_path, "a", "b"))
    start_run(instance, "b")

    waiting = tick(accounts_sensor, instance, first.cursor, accounts=accounts_file(tmp_path, "a"))
    assert instance.get_dynamic_partitions(PARTITIONS) == ["a", "b"]
    assert isinstance(waiting, SkipReason)

    (run,) = instance.get_runs()
    instance.report_run_canceled(run)
    done = tick(accounts_sensor, instance, first.cursor, accounts=accounts_file(tmp_path, "a"))
    assert instance.get_dynamic_partitions(PARTITIONS) == ["a"]
    assert done.run_requests == []


def test_partitions_made_before_the_sensor_are_not_first_synced(instance, tmp_path) -> None:
    instance.add_dynamic_partitions(PARTITIONS, ["a"])

    first = tick(accounts_sensor, instance, None, accounts=accounts_file(tmp_path, "a", "b"))

    assert requested(first) == [("b", "first-sync:b:1")]


def test_accounts_of_a_run_come_from_its_partition_tags() -> None:
    keys = ["a", "b", "c", "d"]
    ranged = {
        "dagster/asset_partition_range_start": "b",
        "dagster/asset_partition_range_end": "d",
    }

    assert accounts_of_run({"dagster/partition": "c"}, keys) == ["c"]
    assert accounts_of_run(ranged, keys) == ["b", "c", "d"]
    assert accounts_of_run(ranged, ["a", "b"]) == ["b", "d"]
    assert accounts_of_run({}, keys) == []


def test_sensor_run_keys(
    instance, api_server: BackInStockServer, tmp_path: Path, monkeypatch
) -> None:
    watermarks = case("sensor-run-keys")["ticks"]
    rows = case("check-sees-only-its-partition")["materialize"]["acct_a"]
    token = "tok-acct_a-secret"
    api_server.add_account(token, rows, name="acct_a")
    monkeypatch.setenv("BIS_TEST_TOKEN_ACCT_A", token)
    instance.add_dynamic_partitions(PARTITIONS, ["acct_a"])
    resources = {
        "accounts": accounts_file(tmp_path, "acct_a"),
        "back_in_stock": BackInStockResource(base_url=api_server.base_url, max_retries=0),
    }

    cursor, results = None, []
    for watermark in watermarks:
        newest = dict(rows[0], variant_no=1, notification_last_added_at=watermark)
        api_server.set_rows(token, [*rows, newest])
        results.append(tick(report_change_sensor, instance, cursor, **resources))
        cursor = results[-1].cursor

    assert [requested(result) for result in results] == [
        [("acct_a", "changed:acct_a:2015-03-23T13:34:41.084Z")],
        [],
        [("acct_a", "changed:acct_a:2015-03-24T10:00:00Z")],
    ]
    assert sum(len(result.run_requests) for result in results) == 2
    assert [json.loads(result.cursor) for result in results] == [
        {"acct_a": "2015-03-23T13:34:41.084Z"},
        {"acct_a": "2015-03-23T13:34:41.084Z"},
        {"acct_a": "2015-03-24T10:00:00Z"},
    ]
    # Each probe is one request for one row.
    assert [(record.per_page, record.status) for record in api_server.requests] == [
        (1, 200)
    ] * 3


def test_a_failed_probe_keeps_the_watermark(
    instance, api_server: BackInStockServer, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("BIS_TEST_TOKEN_ACCT_A", "a-token-the-server-never-saw")
    instance.add_dynamic_partitions(PARTITIONS, ["acct_a", "acct_b"])
    resources = {
        "accounts": accounts_file(tmp_path, "acct_a"),
        "back_in_stock": BackInStockResource(base_url=api_server.base_url, max_retries=0),
    }
    cursor = json.dumps({"acct_a": "2015-03-23T13:34:41.084Z"})

    result = tick(report_change_sensor, instance, cursor, **resources)

    assert result.run_requests == []
    assert json.loads(result.cursor) == {"acct_a": "2015-03-23T13:34:41.084Z"}


def test_failure_sensor_names_the_account_and_the_error(
    harness: SyncHarness, instance, capsys
) -> None:
    harness.instance = instance
    token = harness.token("acct_a")
    # A server that echoes the token back in its error page.
    harness.add_account(
        "acct_a", responses=[{"page": 1, "status": 418, "text": f"no tea for {token}"}]
    )
    result = harness.sync("acct_a", raise_on_error=False)
    (failure,) = [
        event for event in result.all_events if event.event_type == DagsterEventType.RUN_FAILURE
    ]
    context = build_run_status_sensor_context(
        sensor_name=sync_failure_sensor.name,
        dagster_event=failure,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"accounts": harness.resources()["accounts"]},
    ).for_run_failure()

    sync_failure_sensor(context)

    (line,) = [line for line in capsys.readouterr().err.splitlines() if "sync of" in line]
    assert line.endswith(
        f"sync of acct_a failed (run {result.run_id}): step back_in_stock_notifications: "
        "bis_assets.errors.ApiError: account 'acct_a': unexpected status 418; page 1 "
        f"({harness.server.base_url}/api/variants?page=1&per_page=250): "
        "'no tea for ***'"
    )
    assert token not in line


def test_an_emptied_accounts_file_removes_no_partition(tmp_path, instance):
    accounts = accounts_file(tmp_path, "a", "b")
    first = tick(accounts_sensor, instance, None, accounts=accounts)
    Path(accounts.path).write_text("accounts: []\n", encoding="utf-8")

    with pytest.raises(AccountsFileError, match="'accounts:' list is empty"):
        tick(accounts_sensor, instance, first.cursor, accounts=accounts)

    assert instance.get_dynamic_partitions(PARTITIONS) == ["a", "b"]


def test_probes_stop_at_the_budget_and_the_next_tick_resumes_there(
    instance, api_server: BackInStockServer, tmp_path: Path, monkeypatch
) -> None:
    account_ids = ["acct_a", "acct_b", "acct_c"]
    rows = case("check-sees-only-its-partition")["materialize"]["acct_a"]
    for account_id in account_ids:
        api_server.add_account(f"tok-{account_id}", rows, name=account_id)
        monkeypatch.setenv(f"BIS_TEST_TOKEN_{account_id.upper()}", f"tok-{account_id}")
    instance.add_dynamic_partitions(PARTITIONS, account_ids)
    api_server.inject(Fault(503, account="acct_b"))  # a probe does not retry it
    resources = {
        "accounts": accounts_file(tmp_path, *account_ids),
        "back_in_stock": BackInStockResource(base_url=api_server.base_url, max_retries=5),
    }
    # Each look at the clock finds 15 s gone: two probes fit the 40 s budget.
    seconds = itertools.count(step=15.0)
    monkeypatch.setattr(sensors, "clock", lambda: next(seconds))

    first = tick(report_change_sensor, instance, None, **resources)
    probed_first = [record.account for record in api_server.requests]
    api_server.reset_log()
    second = tick(report_change_sensor, instance, first.cursor, **resources)
    probed_second = [record.account for record in api_server.requests]

    assert probed_first == ["acct_a", "acct_b"]
    assert list(json.loads(first.cursor)) == ["acct_c", "acct_a", "acct_b"]
    assert [partition for partition, _ in requested(first)] == ["acct_a"]
    assert probed_second == ["acct_c", "acct_a"]
    assert [partition for partition, _ in requested(second)] == ["acct_c"]
