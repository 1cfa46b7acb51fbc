"""The daily sync of every account, at a local time the user chooses.

``BIS_SCHEDULE_CRON`` (default ``0 3 * * *``) is read in the time zone
``BIS_SCHEDULE_TIMEZONE`` (default ``UTC``); Dagster evaluates the cron in
that zone, so 03:00 stays 03:00 local across daylight saving changes.
"""

import os
from datetime import datetime
from zoneinfo import ZoneInfo

from dagster import (
    DagsterInvalidDefinitionError,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from bis_assets.jobs import sync_job
from bis_assets.partitions import account_partitions
from bis_assets.pools import ensure_api_pool
from bis_assets.resources import AccountsResource

CRON_ENV = "BIS_SCHEDULE_CRON"
TIMEZONE_ENV = "BIS_SCHEDULE_TIMEZONE"
DEFAULT_CRON = "0 3 * * *"
DEFAULT_TIMEZONE = "UTC"


def daily_sync_from_env() -> ScheduleDefinition:
    """The daily sync as the environment sets it; a bad value names its variable."""
    cron = os.environ.get(CRON_ENV) or DEFAULT_CRON
    timezone = os.environ.get(TIMEZONE_ENV) or DEFAULT_TIMEZONE

    try:
        return build_daily_sync(cron, timezone)
    except DagsterInvalidDefinitionError as exc:
        reason = str(exc).rstrip(".")
        raise ValueError(
            f"{CRON_ENV}={cron!r} with {TIMEZONE_ENV}={timezone!r} cannot make a "
            f"schedule: {reason}. Use five cron fields (e.g. {DEFAULT_CRON!r}) and an "
            "IANA time zone (e.g. 'America/New_York')"
        ) from None


def build_daily_sync(cron: str, timezone: str) -> ScheduleDefinition:
    """The schedule that syncs every account at ``cron`` in ``timezone``."""

    @schedule(
        name="daily_sync",
        job=sync_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Syncs every account at '{cron}' ({timezone})",
    )
    def daily_sync(
        context: ScheduleEvaluationContext, accounts: AccountsResource
    ) -> list[RunRequest] | SkipReason:
        """One run per account, each keyed by the tick's local time and the account.

        A run per account rather than one run for a range of them, so that one
        store's failure (a revoked token, a plan downgrade) neither stops nor
        rolls back the others, each partition shows its own result, and the
        pool ``back_in_stock_api`` spreads the syncs over the API. The run key
        makes a re-evaluated tick start nothing twice.
        """
        tick = context.scheduled_execution_time or datetime.now(ZoneInfo(timezone))
        local = tick.astimezone(ZoneInfo(timezone))
        ensure_api_pool(context.instance)  # before its runs race to make it
        partitions = context.instance.get_dynamic_partitions(account_partitions.name)
        configured = accounts.load()

        # A partition whose account left the file waits for the accounts sensor
        # to delete it; a run for it would only fail on the missing account.
        due = [account for account in partitions if account in configured]
        left_out = [account for account in partitions if account not in configured]
        if left_out:
            context.log.warning(f"not in the accounts file, not synced: {left_out}")
        if not due:
            return SkipReason("no account partitions yet; the accounts sensor adds them")

        stamp = local.strftime("%Y-%m-%dT%H:%M%z")
        context.log.info(f"tick {stamp}: syncing {len(due)} accounts")
        return [
            RunRequest(run_key=f"scheduled:{stamp}:{account}", partition_key=account)
            for account in due
        ]

    return daily_sync


daily_sync_schedule = daily_sync_from_env()
