"""The sync job retries a step that failed transiently, and only such a step."""

import pytest
from dagster import DagsterEventType, Definitions, RetryPolicy

from bis_assets.api_server import Fault
from bis_assets.api_server.catalog import storefront_rows
from bis_assets.assets import back_in_stock_notifications
from bis_assets.checks import NOTIFICATIONS_CHECKS
from bis_assets.client import CappedRetry
from bis_assets.embedded import DATABASE_URL_ENV
from bis_assets.jobs import build_sync_job
from bis_assets_tests.harness import SyncHarness

ROWS = storefront_rows("outdoor")[:30]
ASSET_STEP = "back_in_stock_notifications"


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib3's retry waits, skipped; the job's own retry waits 0 s here."""
    monkeypatch.setattr(CappedRetry, "pause", staticmethod(lambda seconds: None))


def run_sync_job(harness: SyncHarness, account_id: str):
    """The project's sync job, with a retry policy that does not wait."""
    job = build_sync_job(RetryPolicy(max_retries=1, delay=0))
    definitions = Definitions(
        assets=[back_in_stock_notifications, *NOTIFICATIONS_CHECKS],
        jobs=[job],
        resources=harness.resources(),
    )

    return definitions.resolve_job_def(job.name).execute_in_process(
        instance=harness.instance, partition_key=account_id, raise_on_error=False
    )


def sync_step_events(result) -> list[str]:
    kinds = (DagsterEventType.STEP_UP_FOR_RETRY, DagsterEventType.STEP_FAILURE,
             DagsterEventType.STEP_SUCCESS)
    return [
        event.event_type_value
        for event in result.all_events
        if event.step_key == ASSET_STEP and event.event_type in kinds
    ]


def test_a_5xx_burst_past_the_clients_retries_is_retried_by_the_job(harness):
    harness.add_account("acct_a", ROWS)
    # The client tries twice (max_retries=1 in the harness): both get 503.
    harness.server.inject(Fault(503, times=2, page=1))

    result = run_sync_job(harness, "acct_a")

    assert result.success
    assert sync_step_events(result) == ["STEP_UP_FOR_RETRY", "STEP_SUCCESS"]
    assert len(harness.rows("acct_a")) == len(ROWS)


def test_a_warehouse_that_is_down_is_retried_by_the_job(harness, monkeypatch, database_url):
    harness.add_account("acct_a", ROWS)
    monkeypatch.setenv(DATABASE_URL_ENV, "postgresql://postgres@127.0.0.1:9/nothing_listens")

    result = run_sync_job(harness, "acct_a")

    assert sync_step_events(result) == ["STEP_UP_FOR_RETRY", "STEP_FAILURE"]


def test_a_refused_token_is_not_retried(harness):
    harness.add_account("acct_a", ROWS)
    harness.monkeypatch.setenv("BIS_TEST_TOKEN_ACCT_A", "a-token-the-server-never-saw")

    result = run_sync_job(harness, "acct_a")

    assert sync_step_events(result) == ["STEP_FAILURE"]
    assert [record.status for record in harness.server.requests] == [401]
    assert "refused (401)" in harness.failure(result)


def test_a_missing_database_is_not_retried(harness, monkeypatch, database_url):
    harness.add_account("acct_a", ROWS)
    monkeypatch.setenv(DATABASE_URL_ENV, database_url.replace("dbname=", "dbname=bis_gone_"))

    result = run_sync_job(harness, "acct_a")

    assert sync_step_events(result) == ["STEP_FAILURE"]
    assert "does not exist" in harness.failure(result)
