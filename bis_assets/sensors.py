"""Sensors: accounts kept in step with the file, syncs on report changes, failures told.

- ``accounts_sensor`` adds and removes account partitions as the accounts
  file changes, and starts the first sync of each new account.
- ``report_change_sensor`` probes each account's report for its newest
  notification request and syncs the account when that moved.
- ``sync_failure_sensor`` logs, in one line, which accounts a failed run
  was for and the error of its failed step.
"""

import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from dagster import (
    AddDynamicPartitionsRequest,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    run_failure_sensor,
    sensor,
)
from dagster._utils.error import SerializableErrorInfo

from bis_assets.accounts import Account, AccountsFileError
from bis_assets.client import BackInStockClient
from bis_assets.errors import SyncError
from bis_assets.jobs import sync_job
from bis_assets.partitions import account_partitions, partition_changes
from bis_assets.pools import ensure_api_pool
from bis_assets.resources import AccountsResource, BackInStockResource

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]

WATERMARK_FIELD = "notification_last_added_at"
CHANGE_PROBE_SECONDS = 300
# A tick must end well within Dagster's 60 s sensor timeout: probes are
# single attempts with short timeouts, and stop when the budget is spent.
PROBE_BUDGET_SECONDS = 40.0
PROBE_SETTINGS = {"max_retries": 0, "connect_timeout": 3.0, "read_timeout": 10.0}
MAX_REASON_CHARS = 500
REDACTED = "***"  # as the client masks an echoed token

clock = time.monotonic  # the probe budget's clock; tests move it on


@dataclass(frozen=True)
class AccountsCursor:
    """What the accounts sensor remembers between ticks.

    ``generation`` grows with every tick that changed something and is part
    of each first-sync run key: a retried tick reuses its keys (no duplicate
    runs), while an account taken out and put back later gets a new key (its
    old key cannot block the new first sync).
    """

    generation: int
    known: tuple[str, ...]  # accounts whose first sync was asked for, or that pre-existed

    @classmethod
    def parse(cls, text: str | None, partitions: Sequence[str]) -> "AccountsCursor":
        # Before the first tick, partitions someone already made count as known.
        if not text:
            return cls(0, tuple(partitions))
        state = json.loads(text)

        return cls(state["generation"], tuple(state["known"]))

    def serialize(self) -> str:
        return json.dumps({"generation": self.generation, "known": list(self.known)})


@sensor(
    job=sync_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Keeps the account partitions in step with the accounts file",
)
def accounts_sensor(
    context: SensorEvaluationContext, accounts: AccountsResource
) -> SensorResult | SkipReason:
    """Add and remove account partitions as the file changes; first-sync new accounts."""
    instance = context.instance
    ensure_api_pool(instance)  # before the first syncs of many accounts race to make it
    configured = list(accounts.load())
    partitions = instance.get_dynamic_partitions(account_partitions.name)
    cursor = AccountsCursor.parse(context.cursor, partitions)

    added, removed = partition_changes(instance, configured)
    busy = accounts_in_flight(instance, partitions)
    postponed = [account for account in removed if account in busy]
    removable = [account for account in removed if account not in busy]
    unsynced = [account for account in configured if account not in cursor.known]
    if postponed:
        context.log.info(f"removal of {postponed} waits for their runs in flight to end")
    if not (added or removable or unsynced):
        return SkipReason(f"the {len(configured)} accounts and their partitions agree")

    generation = cursor.generation + 1
    context.log.info(f"adding {added}, removing {removable}, first sync of {unsynced}")
    return SensorResult(
        run_requests=[
            RunRequest(run_key=f"first-sync:{account}:{generation}", partition_key=account)
            for account in unsynced
        ],
        dynamic_partitions_requests=_partition_requests(added, removable),
        cursor=AccountsCursor(generation, tuple(configured)).serialize(),
    )


def _partition_requests(
    added: list[str], removed: list[str]
) -> list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest]:
    name = account_partitions.name
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    if added:
        requests.append(AddDynamicPartitionsRequest(name, added))
    if removed:
        requests.append(DeleteDynamicPartitionsRequest(name, removed))

    return requests


def accounts_in_flight(instance: DagsterInstance, partitions: Sequence[str]) -> set[str]:
    """Accounts that a queued or running run is syncing.

    Deleting the partition of such an account could fail the run when it
    resolves its partition range, so the deletion waits.
    """
    runs = instance.get_runs(filters=RunsFilter(statuses=IN_FLIGHT))

    return {account for run in runs for account in accounts_of_run(run.tags, partitions)}


def accounts_of_run(tags: Mapping[str, str], partitions: Sequence[str]) -> list[str]:
    """The accounts a run syncs, from its partition tag or partition range tags."""
    if PARTITION_TAG in tags:
        return [tags[PARTITION_TAG]]
    start, end = tags.get(RANGE_START_TAG), tags.get(RANGE_END_TAG)
    if start is None or end is None:
        return []
    if start not in partitions or end not in partitions:
        return [start, end]

    return list(partitions[partitions.index(start) : partitions.index(end) + 1])


@sensor(
    job=sync_job,
    minimum_interval_seconds=CHANGE_PROBE_SECONDS,
    default_status=DefaultSensorStatus.STOPPED,
    description="Syncs an account when its report has a newer notification request",
)
def report_change_sensor(
    context: SensorEvaluationContext,
    accounts: AccountsResource,
    back_in_stock: BackInStockResource,
) -> SensorResult:
    """Sync each account whose newest notification_last_added_at moved since last tick.

    The cursor maps each account to the watermark last seen, and the run key
    holds the watermark, so one watermark never starts two syncs. Each probe
    is one request with short timeouts, and a tick stops probing after
    ``PROBE_BUDGET_SECONDS``, well within Dagster's sensor timeout. A report
    that changes without a new request (a sent notification) is left to
    the daily schedule. Stopped by default: it costs a request per account
    per tick.
    """
    seen = json.loads(context.cursor or "{}")
    partitions = set(context.instance.get_dynamic_partitions(account_partitions.name))
    watched = [account for account in accounts.load().values() if account.id in partitions]

    # The cursor's order is the order of the next tick's probes: new accounts
    # first, then those not probed last time, then the rest. When the budget
    # runs out, the next tick starts where this one stopped.
    by_id = {account.id: account for account in watched}
    queue = [account_id for account_id in by_id if account_id not in seen]
    queue += [account_id for account_id in seen if account_id in by_id]
    watermarks = {account_id: seen.get(account_id) for account_id in queue}
    started, probed = clock(), []
    for account_id in queue:
        if clock() - started > PROBE_BUDGET_SECONDS:
            context.log.warning(
                f"probe budget of {PROBE_BUDGET_SECONDS:.0f} s spent after {len(probed)} of "
                f"{len(queue)} accounts; the rest are probed first next tick"
            )
            break
        probed.append(account_id)
        try:
            watermarks[account_id] = _probe(back_in_stock, by_id[account_id])
        except SyncError as exc:
            context.log.warning(f"{exc}; probing again next tick")

    changed = [
        account_id
        for account_id in by_id
        if watermarks[account_id] is not None and watermarks[account_id] != seen.get(account_id)
    ]
    next_queue = [account_id for account_id in queue if account_id not in probed] + probed
    context.log.info(f"probed {len(probed)} of {len(queue)} accounts; changed: {changed}")
    return SensorResult(
        run_requests=[
            RunRequest(
                run_key=f"changed:{account_id}:{watermarks[account_id]}",
                partition_key=account_id,
            )
            for account_id in changed
        ],
        cursor=json.dumps({account_id: watermarks[account_id] for account_id in next_queue}),
    )


def _probe(back_in_stock: BackInStockResource, account: Account) -> str | None:
    with back_in_stock.client_for(account, **PROBE_SETTINGS) as client:
        return newest_addition(client)


def newest_addition(client: BackInStockClient) -> str | None:
    """The report's newest notification_last_added_at, from one row sorted newest first."""
    rows = client.fetch_page(1, per_page=1, sort=WATERMARK_FIELD).rows
    newest = rows[0].get(WATERMARK_FIELD) if rows else None

    return str(newest) if newest else None


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Logs which accounts a failed sync was for, and why, in one line",
)
def sync_failure_sensor(context: RunFailureSensorContext, accounts: AccountsResource) -> None:
    """Log the failed run's accounts and its failed step's error, tokens masked."""
    run = context.dagster_run
    partitions = context.instance.get_dynamic_partitions(account_partitions.name)
    synced = accounts_of_run(run.tags, partitions) or ["(no account)"]

    reasons = [
        f"step {event.step_key}: {_root_message(event.step_failure_data.error)}"
        for event in context.get_step_failure_events()
        if event.step_failure_data.error is not None
    ] or [context.failure_event.message or "no error was recorded"]
    line = f"sync of {', '.join(synced)} failed (run {run.run_id}): {'; '.join(reasons)}"

    try:
        known = list(accounts.load().values())
    except AccountsFileError as exc:
        known = []  # the failure still deserves its line; say why masking was blind
        line += f" (tokens not masked: {exc})"
    context.log.error(_one_line(_masked(line, known)))


def _root_message(error: SerializableErrorInfo) -> str:
    """The innermost cause: Dagster wraps our error in its own."""
    while error.cause is not None:
        error = error.cause

    return error.message


def _masked(text: str, accounts: Iterable[Account]) -> str:
    """``text`` without any account's token, should a server have echoed one."""
    for account in accounts:
        token = os.environ.get(account.token_env, "")
        if token:
            text = text.replace(token, REDACTED)

    return text


def _one_line(text: str) -> str:
    flat = " ".join(text.split())

    return flat if len(flat) <= MAX_REASON_CHARS else flat[: MAX_REASON_CHARS - 1] + "…"


ALL_SENSORS = (accounts_sensor, report_change_sensor, sync_failure_sensor)
