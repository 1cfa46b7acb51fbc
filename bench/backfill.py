"""Many accounts: one single-run backfill against one run per account.

N accounts of a few hundred variants each are synced through Dagster's
``materialize`` with the product's asset, checks, resources and IO manager:
once as one run over the partition range (the asset's single-run backfill
policy), once as N runs of one partition each. What the rows themselves cost
is measured by one run of one account holding all N accounts' rows; the time
per account beyond its rows is (time of the mode - that run) / N. The API
answers at once and the client's budget is 1000 requests a second, so this
measures orchestration, not pacing.
"""

import os
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml
from dagster import DagsterInstance, materialize
from psycopg2 import sql

from bench.common import Stopwatch, scratch_database
from bench.serve_synthetic import SyntheticServer, token_for
from bis_assets.assets import back_in_stock_notifications
from bis_assets.checks import NOTIFICATIONS_CHECKS
from bis_assets.embedded import DATABASE_URL_ENV
from bis_assets.io_manager import PostgresNotificationsIOManager
from bis_assets.partitions import account_partitions
from bis_assets.resources import AccountsResource, BackInStockResource, WarehouseResource
from bis_assets.warehouse import TableName, connect

BULK_ACCOUNT = "bulk"
PACE = 1000.0
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class BackfillResult:
    """One way of syncing the accounts."""

    mode: str
    accounts: int
    rows: int
    runs: int
    seconds: float


def run(accounts: int, rows_each: int) -> list[BackfillResult]:
    """The bulk account, the single run and the run per account, in that order."""
    names = [f"acct-{number:03d}" for number in range(accounts)]
    total = accounts * rows_each
    served = dict.fromkeys(names, rows_each) | {BULK_ACCOUNT: total}
    with (
        SyntheticServer(served) as server,
        scratch_database("backfill") as database,
        _environment(served, database.dsn) as accounts_file,
    ):
        instance = DagsterInstance.ephemeral()
        instance.add_dynamic_partitions(account_partitions.name, list(served))
        resources = _resources(server.base_url, accounts_file)

        def sync(mode: str, synced: int, runs: list[dict]) -> BackfillResult:
            _drop_table(database.dsn)
            watch = Stopwatch()
            for partition in runs:
                result = materialize(
                    [back_in_stock_notifications, *NOTIFICATIONS_CHECKS],
                    resources=resources,
                    instance=instance,
                    run_config=QUIET,
                    **partition,
                )
                assert result.success, f"{mode}: a run failed"
            measured = BackfillResult(mode, synced, total, len(runs), watch.seconds)
            print(f"  backfill {mode:<32} {measured.seconds:8.2f} s", flush=True)

            return measured

        range_tags = {
            "dagster/asset_partition_range_start": names[0],
            "dagster/asset_partition_range_end": names[-1],
        }

        return [
            sync(f"1 account of {total:,} rows", 1, [{"partition_key": BULK_ACCOUNT}]),
            sync(f"{accounts} accounts, single run", accounts, [{"tags": range_tags}]),
            sync(
                f"{accounts} accounts, a run each",
                accounts,
                [{"partition_key": name} for name in names],
            ),
        ]


def _resources(base_url: str, accounts_file: Path) -> dict:
    warehouse = WarehouseResource()

    return {
        "back_in_stock": BackInStockResource(base_url=base_url, requests_per_second=PACE),
        "accounts": AccountsResource(path=str(accounts_file)),
        "warehouse": warehouse,
        "notifications_io_manager": PostgresNotificationsIOManager(warehouse=warehouse),
    }


@contextmanager
def _environment(accounts: dict[str, int], dsn: str):
    """An accounts file, the tokens' variables and the warehouse URL, for the block."""
    variables = {DATABASE_URL_ENV: dsn}
    entries = []
    for number, name in enumerate(accounts):
        token_env = f"BIS_BENCH_TOKEN_{number}"
        variables[token_env] = token_for(name)
        entries.append({"id": name, "source_id": f"src-{name}", "token_env": token_env})
    saved = {name: os.environ.get(name) for name in variables}
    with tempfile.TemporaryDirectory(prefix="bis-bench-") as folder, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Dagster's beta and preview notices, once per run
        path = Path(folder) / "accounts.yaml"
        path.write_text(yaml.safe_dump({"accounts": entries}), encoding="utf-8")
        os.environ.update(variables)
        try:
            yield path
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _drop_table(dsn: str) -> None:
    with connect(dsn) as connection, connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(TableName().identifier))
