"""The Dagster instance on PostgreSQL: a server restart mid-run, the pool made once."""

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from bis_assets.api_server import Fault
from bis_assets.api_server.catalog import storefront_rows
from bis_assets.embedded import EmbeddedPostgres, start_embedded
from bis_assets.pools import API_POOL, ensure_api_pool
from bis_assets_tests.harness import SyncHarness, run_at_once

ACCOUNT = "outdoor"
OUTAGE_SECONDS = 2.5  # dagster-postgres retries a connection for about 6 s


@pytest.fixture
def storage_folder() -> Iterator[Path]:
    # Outside pytest's temporary root, for the reason conftest gives.
    folder = Path(tempfile.mkdtemp(prefix="bis-test-storage-"))
    yield folder

    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def storage(storage_folder: Path) -> Iterator[EmbeddedPostgres]:
    """A storage server of the test's own, which the test may stop and start."""
    server = start_embedded(storage_folder)
    yield server

    if (server.pgdata / "postmaster.pid").exists():
        server.stop()


def postgres_instance(home: Path, storage_url: str) -> DagsterInstance:
    """An instance whose runs, events and schedules live in PostgreSQL."""
    home.mkdir()
    config = {
        "storage": {"postgres": {"postgres_url": storage_url}},
        "concurrency": {"pools": {"default_limit": 4}},
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")

    return DagsterInstance.from_config(str(home))


@pytest.mark.parametrize("admin_url", ["embedded"], indirect=True)
def test_a_storage_restart_mid_run_fails_no_run(
    harness: SyncHarness,
    storage: EmbeddedPostgres,
    storage_folder: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    harness.instance = postgres_instance(harness.workdir / "dagster_home", storage.storage_url)
    harness.add_account(ACCOUNT, storefront_rows(ACCOUNT))
    # The first page stalls for a second; the storage server goes down then,
    # and the run's next event (its first page's log line) finds it down.
    harness.server.inject(Fault(200, hang=1.0, page=1, account=ACCOUNT))

    def restart_storage_while_stalled() -> None:
        deadline = time.monotonic() + 30
        while not harness.server.hanging_requests and time.monotonic() < deadline:
            time.sleep(0.02)
        storage.stop()
        time.sleep(OUTAGE_SECONDS)
        start_embedded(storage_folder)

    restarter = threading.Thread(target=restart_storage_while_stalled)
    restarter.start()
    with caplog.at_level(logging.WARNING):
        result = harness.sync(ACCOUNT)
    restarter.join(timeout=60)

    retried = [record for record in caplog.records if "Retrying failed database" in record.message]
    assert retried, "the run never met the storage server down"
    assert result.success
    assert harness.instance.get_run_by_id(result.run_id).status == DagsterRunStatus.SUCCESS
    assert len(harness.rows(ACCOUNT)) == len(storefront_rows(ACCOUNT))
    harness.instance.dispose()


def test_the_pool_is_made_once_however_many_ask_at_once(storage, tmp_path):
    instance = postgres_instance(tmp_path / "dagster_home", storage.storage_url)

    errors = run_at_once([lambda: ensure_api_pool(instance)] * 4)

    pools = instance.event_log_storage.get_pool_limits()
    assert errors == []
    assert [(pool.name, pool.limit, pool.from_default) for pool in pools] == [
        (API_POOL, 4, True)
    ]
    instance.dispose()
