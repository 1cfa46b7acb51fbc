"""The headless demo: sync every account through Dagster and print a summary."""

from dagster import DagsterInstance, ExecuteInProcessResult

from bis_assets.accounts import load_accounts
from bis_assets.partitions import account_partitions
from bis_assets.pools import ensure_api_pool
from bis_assets.resources import WarehouseResource

PARTITIONS = account_partitions.name
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
SUMMARY_COLUMNS = ("account", "fetched", "inserted", "updated", "unchanged", "in table", "checks")


def run_demo() -> int:
    """Sync each account in its own run; 0 when every run and check passed."""
    from bis_assets.definitions import defs, sync_job  # reads the env the CLI set

    instance = DagsterInstance.get()
    ensure_api_pool(instance)  # another demo may be starting beside this one
    accounts = list(load_accounts())
    # Only adds: the instance may hold other accounts' partitions too.
    new = [a for a in accounts if not instance.has_dynamic_partition(PARTITIONS, a)]
    instance.add_dynamic_partitions(PARTITIONS, new)
    job = defs.resolve_job_def(sync_job.name)

    results = {}
    for account_id in accounts:
        results[account_id] = job.execute_in_process(
            instance=instance,
            partition_key=account_id,
            raise_on_error=False,
            run_config=QUIET_CONSOLE,
        )
        if _interrupted(results[account_id]):
            print(f"bis-assets: interrupted during account {account_id}; stopping")
            return 130
    stored = _rows_in_table(WarehouseResource(), accounts)
    lines = [_summary_line(account_id, results[account_id], stored) for account_id in accounts]
    print(_format_table(lines + [_total_line(lines)]))

    failed = [account_id for account_id, result in results.items() if not result.success]
    for account_id in failed:
        print(f"account {account_id}: run {results[account_id].run_id} failed; see its logs")

    return 1 if failed or not all(line[-1].endswith("passed") for line in lines) else 0


def _interrupted(result: ExecuteInProcessResult) -> bool:
    """Whether Ctrl-C or SIGTERM ended the run; Dagster reports it as a failure."""
    return any(
        event.is_step_failure
        and event.step_failure_data.error.cls_name
        in ("KeyboardInterrupt", "DagsterExecutionInterruptedError")
        for event in result.all_events
    )


def _summary_line(account_id: str, result: ExecuteInProcessResult, stored: dict) -> tuple:
    if not result.success:
        return (account_id, "-", "-", "-", "-", stored.get(account_id, 0), "run failed")
    materialization = result.get_asset_materialization_events()[0].materialization
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    checks = result.get_asset_check_evaluations()
    passed = all(check.passed for check in checks)

    return (
        account_id,
        metadata["rows_fetched"],
        metadata["rows_inserted"],
        metadata["rows_updated"],
        metadata["rows_unchanged"],
        stored.get(account_id, 0),
        f"{len(checks)} passed" if passed else "failed",
    )


def _total_line(lines: list[tuple]) -> tuple:
    def total(position: int) -> int | str:
        values = [line[position] for line in lines]
        return sum(values) if all(isinstance(v, int) for v in values) else "-"

    checks = "passed" if all(line[-1].endswith("passed") for line in lines) else "failed"
    return ("all", *(total(position) for position in range(1, 6)), checks)


def _rows_in_table(warehouse: WarehouseResource, accounts: list[str]) -> dict[str, int]:
    with warehouse.connect() as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT _account_id, count(*) FROM back_in_stock.notifications "
            "WHERE _account_id = ANY(%s) AND __deleted_at IS NULL GROUP BY _account_id",
            (accounts,),
        )
        return dict(cursor.fetchall())


def _format_table(lines: list[tuple]) -> str:
    rows = [SUMMARY_COLUMNS, *[tuple(str(value) for value in line) for line in lines]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(SUMMARY_COLUMNS))]
    rendered = [
        "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    rendered.insert(1, "-" * len(rendered[0]))

    return "\n".join(rendered)
