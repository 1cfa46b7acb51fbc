"""A real ``dagster dev`` for tests: webserver and daemon on PostgreSQL storage.

The site is made once per test session, whichever test module asks first:
two accounts on our API server, fresh databases on the machine's PostgreSQL (on
the embedded one where none answers), a DAGSTER_HOME holding a copy of the
project's ``dagster.yaml``, and both accounts synced by the daemon. Every
process started here stops by itself.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg2
import pytest
import requests
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from bis_assets.api_server import BackInStockServer
from bis_assets.api_server.catalog import storefront_rows
from bis_assets.checks import NOTIFICATIONS_CHECKS
from bis_assets.embedded import create_database, storage_url_for
from bis_assets_tests.conftest import (
    MACHINE_POSTGRES_URL,
    machine_postgres_answers,
    write_accounts_file,
)

PROJECT = Path(__file__).resolve().parents[1]
ACCOUNTS = ("stanley1913", "outdoor")
ASSET_KEY = {"path": ["back_in_stock_notifications"]}
CHECK_NAMES = sorted(key.name for checks in NOTIFICATIONS_CHECKS for key in checks.check_keys)
# Bounds: no process of ours outlives these, whatever happens to the test.
DEV_LIFETIME_SECONDS = 300
START_TIMEOUT = 90.0
RUN_TIMEOUT = 150.0
STOP_GRACE_SECONDS = 20.0

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, timeout: float, probe: Callable[[], T | None]) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.5)

    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class DagsterDev:
    """``dagster dev`` in its own process group, with a watchdog that ends it."""

    env: dict[str, str]
    workdir: Path
    port: int = 0
    process: subprocess.Popen | None = None
    starts: int = 0
    _http: requests.Session = field(default_factory=requests.Session)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = free_port()
        self.starts += 1
        log = (self.workdir / f"dagster-dev-{self.starts}.log").open("wb")
        # The watchdog shares the process group; it ends the whole group when
        # the lifetime is up, should the test never get to stop it.
        watchdog = (
            f"(trap '' TERM; sleep {DEV_LIFETIME_SECONDS}; kill -TERM -$$; "
            "sleep 10; kill -KILL -$$) & exec \"$@\""
        )
        command = [
            "sh", "-c", watchdog, "sh",
            sys.executable, "-m", "dagster", "dev",
            "-m", "bis_assets.definitions", "-h", "127.0.0.1", "-p", str(self.port),
        ]
        self.process = subprocess.Popen(
            command, cwd=self.workdir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        log.close()
        self._http.trust_env = False  # only 127.0.0.1, never through a proxy

        wait_for("the code location to load", START_TIMEOUT, self._location_loaded)

    def stop(self) -> None:
        """SIGTERM to the process group, then SIGKILL to whatever is left of it."""
        if self.process is None:
            return
        group = self.process.pid
        _signal_group(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass

        _signal_group(group, signal.SIGKILL)  # the watchdog and any straggler
        self.process.wait(timeout=5)
        self.process = None

    def graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self._http.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body["errors"]

        return body["data"]

    def log_text(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")[-4000:]
            for path in sorted(self.workdir.glob("dagster-dev-*.log"))
        )

    def _location_loaded(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"dagster dev exited early:\n{self.log_text()}")
        try:
            data = self.graphql(LOCATIONS_QUERY)
        except requests.RequestException:
            return False
        entries = data["workspaceOrError"].get("locationEntries", [])

        return any(entry["loadStatus"] == "LOADED" for entry in entries)


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass  # the group is gone already


LOCATIONS_QUERY = """
query { workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }
"""

PARTITIONS_QUERY = """
query($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode { partitionKeys } }
}
"""

RUNS_QUERY = """
query {
  runsOrError(limit: 50) {
    ... on Runs { results { runId status tags { key value } } }
  }
}
"""

BACKFILL_MUTATION = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""

LAUNCH_RUN_MUTATION = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""

RUN_QUERY = """
query($id: ID!) {
  runOrError(runId: $id) {
    ... on Run { status startTime endTime stepStats { stepKey startTime endTime } }
  }
}
"""

BACKFILL_QUERY = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill { status } }
}
"""


def runs(dev: DagsterDev) -> list[dict[str, Any]]:
    """Every run, newest first, with its tags as a dict."""
    found = dev.graphql(RUNS_QUERY)["runsOrError"]["results"]

    return [run | {"tags": {tag["key"]: tag["value"] for tag in run["tags"]}} for run in found]


def finished(dev: DagsterDev, chosen: Callable[[dict], bool], count: int) -> list[dict] | None:
    """The ``count`` chosen runs once all have ended; fails fast when one failed."""
    matching = [run for run in runs(dev) if chosen(run)]
    failed = [run for run in matching if run["status"] in ("FAILURE", "CANCELED")]
    if failed:
        raise AssertionError(f"runs failed: {failed}\n{dev.log_text()}")
    done = [run for run in matching if run["status"] == "SUCCESS"]

    return done if len(done) >= count else None


def launch_sync(dev: DagsterDev, account: str) -> str:
    """Queue a run of the sync job for ``account``, as the UI's launchpad does."""
    selector = {
        "repositoryLocationName": "bis_assets.definitions",
        "repositoryName": "__repository__",
        "jobName": "sync_back_in_stock",
    }
    tags = [{"key": "dagster/partition", "value": account}]
    launched = dev.graphql(
        LAUNCH_RUN_MUTATION,
        params={"selector": selector, "executionMetadata": {"tags": tags}},
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched

    return launched["run"]["runId"]


def run_details(dev: DagsterDev, run_id: str) -> dict[str, Any]:
    """A run's status, start and end, and its steps' start and end."""
    return dev.graphql(RUN_QUERY, id=run_id)["runOrError"]


def ended(dev: DagsterDev, run_ids: list[str]) -> list[dict[str, Any]] | None:
    """The details of every run in ``run_ids`` once all have ended."""
    details = [run_details(dev, run_id) for run_id in run_ids]
    if all(run["status"] in ("SUCCESS", "FAILURE", "CANCELED") for run in details):
        return details

    return None


@dataclass
class DagsterSite:
    """A running ``dagster dev`` whose two accounts have been synced."""

    dev: DagsterDev
    api: BackInStockServer
    backfill_id: str
    storage_url: str
    storage_admin_url: str  # the maintenance database of the storage's server
    storage_database: str


def drop_connections(admin_url: str, database: str) -> int:
    """End every session on ``database``, as a server restart or failover would."""
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            )
            return cursor.fetchone()[0]
    finally:
        connection.close()


def _fresh_database(admin_url: str, name: str) -> str:
    create_database(admin_url, name)

    return make_dsn(admin_url, dbname=name)


def _drop_database(admin_url: str, name: str) -> None:
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        cursor.execute(statement.format(sql.Identifier(name)))
    connection.close()


def _start_site(
    workdir: Path, admin_url: str, cleanups: list[Callable[[], None]]
) -> DagsterSite:
    """Databases, API server, DAGSTER_HOME and dagster dev; then both accounts synced."""
    databases = {role: f"bis_dev_{role}_{os.getpid()}" for role in ("storage", "warehouse")}
    urls = {role: _fresh_database(admin_url, name) for role, name in databases.items()}
    for name in databases.values():
        cleanups.append(lambda name=name: _drop_database(admin_url, name))

    api = BackInStockServer().start()
    cleanups.append(api.stop)
    tokens = {account: f"BIS_DEV_TOKEN_{account.upper()}" for account in ACCOUNTS}
    for account in ACCOUNTS:
        api.add_account(f"dev-token-{account}", storefront_rows(account, 0), name=account)
    accounts_path = write_accounts_file(workdir / "accounts.yaml", tokens)

    home = workdir / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    storage_url = storage_url_for(urls["storage"])
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith("BIS_")},
        "DAGSTER_HOME": str(home),
        "BIS_DAGSTER_STORAGE_URL": storage_url,
        "BIS_DATABASE_URL": urls["warehouse"],
        "BIS_API_BASE_URL": api.base_url,
        "BIS_ACCOUNTS_FILE": str(accounts_path),
        "PYTHONUNBUFFERED": "1",
        **{tokens[account]: f"dev-token-{account}" for account in ACCOUNTS},
    }

    dev = DagsterDev(env, workdir)
    cleanups.append(dev.stop)
    dev.start()
    backfill_id = _sync_both_accounts(dev)

    return DagsterSite(
        dev, api, backfill_id, storage_url, admin_url, databases["storage"]
    )


def _sync_both_accounts(dev: DagsterDev) -> str:
    """The accounts sensor's first syncs and, alongside, one backfill run of both."""
    wait_for(
        "the accounts sensor to add the partitions",
        START_TIMEOUT,
        lambda: dev.graphql(PARTITIONS_QUERY, key=ASSET_KEY)["assetNodeOrError"]["partitionKeys"]
        == list(ACCOUNTS),
    )
    launched = dev.graphql(
        BACKFILL_MUTATION,
        params={"assetSelection": [ASSET_KEY], "partitionNames": list(ACCOUNTS)},
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    wait_for(
        "the first syncs the accounts sensor started",
        RUN_TIMEOUT,
        lambda: finished(dev, _started_by_accounts_sensor, len(ACCOUNTS)),
    )
    wait_for(
        "the backfill of both accounts",
        RUN_TIMEOUT,
        lambda: dev.graphql(BACKFILL_QUERY, id=backfill_id)["partitionBackfillOrError"][
            "status"
        ]
        in ("COMPLETED", "COMPLETED_SUCCESS"),
    )

    return backfill_id


def _started_by_accounts_sensor(run: dict) -> bool:
    return run["tags"].get("dagster/sensor_name") == "accounts_sensor"


@dataclass
class _SiteSlot:
    """The one site of the session, or why it could not be made."""

    site: DagsterSite | None = None
    failure: str | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    def clean_up(self) -> None:
        for cleanup in reversed(self.cleanups):
            cleanup()


_slot_key = pytest.StashKey[_SiteSlot]()


@pytest.fixture(scope="session", name="dagster_site")
def dagster_site_fixture(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> DagsterSite:
    """One synced ``dagster dev`` site for the whole session, shared by test modules."""
    # Each module that imports this fixture gets its own copy of it; the
    # stash keeps the site single, and the session's end takes it down.
    stash = request.config.stash
    if _slot_key not in stash:
        slot = stash[_slot_key] = _SiteSlot()
        request.addfinalizer(slot.clean_up)  # before the servers it uses stop
        try:
            # The machine's PostgreSQL where one answers, else our embedded one.
            admin_url = (
                MACHINE_POSTGRES_URL
                if machine_postgres_answers()
                else request.getfixturevalue("embedded_admin_url")
            )
            workdir = tmp_path_factory.mktemp("dagster_dev")
            slot.site = _start_site(workdir, admin_url, slot.cleanups)
        except Exception as exc:
            slot.failure = f"{type(exc).__name__}: {exc}"
            raise

    slot = stash[_slot_key]
    if slot.site is None:
        pytest.fail(f"the dagster dev site could not be made: {slot.failure}")

    return slot.site
