"""Runs real syncs for tests: our API server, a real PostgreSQL, Dagster in process."""

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from dagster import DagsterInstance, ExecuteInProcessResult, Failure, materialize
from psycopg2 import sql

from bis_assets.api_server import BackInStockServer
from bis_assets.assets import back_in_stock_notifications
from bis_assets.checks import sync_key_matches_columns, sync_key_present_and_unique
from bis_assets.errors import SyncError
from bis_assets.io_manager import PostgresNotificationsIOManager
from bis_assets.partitions import account_partitions
from bis_assets.resources import AccountsResource, BackInStockResource, WarehouseResource
from bis_assets_tests.conftest import write_accounts_file

CASES_FILE = Path(__file__).with_name("data") / "cases.json"


def case(case_id: str) -> dict[str, Any]:
    """The given input of one field case from ``data/cases.json``."""
    cases = {entry["id"]: entry for entry in json.loads(CASES_FILE.read_text("utf-8"))}

    return cases[case_id]["given"]


def case_rows(case_id: str) -> list[dict[str, Any]]:
    """The rows of every page of a case, in order."""
    return [row for response in case(case_id)["responses"] for row in response["body"]]


@dataclass
class SyncHarness:
    """Accounts on our API server, synced through Dagster into a test database."""

    server: BackInStockServer
    workdir: Path
    database_url: str
    monkeypatch: pytest.MonkeyPatch
    instance: DagsterInstance = field(default_factory=DagsterInstance.ephemeral)
    api_settings: dict[str, Any] = field(default_factory=dict)
    _accounts: dict[str, str] = field(default_factory=dict)

    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, account_id: str) -> str:
        return self._tokens.setdefault(account_id, f"tok-{account_id}-secret")

    def add_account(
        self,
        account_id: str,
        rows: Iterable[dict] = (),
        responses: list | None = None,
        token: str | None = None,
    ) -> None:
        """Serve ``rows`` (or scripted ``responses``) as ``account_id``."""
        if token:
            self._tokens[account_id] = token
        token = self.token(account_id)
        if account_id not in self._accounts:
            self.server.add_account(token, list(rows), name=account_id)
        else:
            self.server.set_rows(token, list(rows))
        self.server.script(token, responses)

        token_env = f"BIS_TEST_TOKEN_{account_id.upper().replace('-', '_')}"
        self.monkeypatch.setenv(token_env, token)
        self._accounts[account_id] = token_env
        if not self.instance.has_dynamic_partition(account_partitions.name, account_id):
            self.instance.add_dynamic_partitions(account_partitions.name, [account_id])

    def resources(self) -> dict[str, Any]:
        accounts_path = write_accounts_file(self.workdir / "accounts.yaml", self._accounts)
        warehouse = WarehouseResource()
        api = {"backoff_factor": 0.0, "max_retries": 1} | self.api_settings

        return {
            "back_in_stock": BackInStockResource(base_url=self.server.base_url, **api),
            "accounts": AccountsResource(path=str(accounts_path)),
            "warehouse": warehouse,
            "notifications_io_manager": PostgresNotificationsIOManager(warehouse=warehouse),
        }

    def sync(self, *account_ids: str, raise_on_error: bool = True) -> ExecuteInProcessResult:
        """Materialize the asset and its checks for ``account_ids`` in one run."""
        if len(account_ids) == 1:
            partition = {"partition_key": account_ids[0]}
        else:
            keys = self.instance.get_dynamic_partitions(account_partitions.name)
            assert [key for key in keys if key in account_ids] == list(account_ids)
            partition = {
                "tags": {
                    "dagster/asset_partition_range_start": account_ids[0],
                    "dagster/asset_partition_range_end": account_ids[-1],
                }
            }

        return materialize(
            [back_in_stock_notifications, sync_key_present_and_unique, sync_key_matches_columns],
            resources=self.resources(),
            instance=self.instance,
            raise_on_error=raise_on_error,
            **partition,
        )

    def permanent_error(self, *account_ids: str) -> SyncError:
        """Sync, expecting the error that no retry could mend; returns it."""
        with pytest.raises(Failure) as failed:
            self.sync(*account_ids)
        assert failed.value.allow_retries is False

        return failed.value.__cause__

    def failure(self, result: ExecuteInProcessResult) -> str:
        """The failed step's error with its causes, as a person reads it in the UI."""
        (failure,) = [event for event in result.all_events if event.is_step_failure]

        return failure.step_failure_data.error.to_string()

    def rows(self, account_id: str | None = None, order: str = "__sync_key") -> list[dict]:
        """The stored rows (of one account, or all), as dicts, ordered by ``order``."""
        return table_rows(self.database_url, account_id, order)


def table_rows(
    database_url: str, account_id: str | None = None, order: str = "__sync_key"
) -> list[dict]:
    """Rows of back_in_stock.notifications as dicts; [] when the table is missing."""
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.execute("SELECT to_regclass('back_in_stock.notifications')")
            if cursor.fetchone()[0] is None:
                return []
            statement = sql.SQL(
                "SELECT * FROM back_in_stock.notifications "
                "WHERE %(account)s::text IS NULL OR _account_id = %(account)s "
                "ORDER BY _account_id, {}"
            ).format(sql.Identifier(order))
            cursor.execute(statement, {"account": account_id})
            names = [column.name for column in cursor.description]
            return [dict(zip(names, record, strict=True)) for record in cursor.fetchall()]
    finally:
        connection.close()


def run_at_once(jobs: list, timeout: float = 60) -> list[BaseException]:
    """Run the callables in threads released together; returns what they raised."""
    start = threading.Barrier(len(jobs))
    errors: list[BaseException] = []

    def run(job) -> None:
        try:
            start.wait(timeout=10)
            job()
        except BaseException as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)

    return errors


@pytest.fixture
def api_server() -> Iterable[BackInStockServer]:
    with BackInStockServer() as server:
        yield server


@pytest.fixture
def harness(
    api_server: BackInStockServer,
    tmp_path: Path,
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> SyncHarness:
    return SyncHarness(api_server, tmp_path, database_url, monkeypatch)
