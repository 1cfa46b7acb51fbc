"""The daily sync schedule: its ticks across DST, its run requests and run keys."""

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    DagsterInstance,
    RunRequest,
    SkipReason,
    build_schedule_context,
    instance_for_test,
)

# The scheduler daemon's own tick iterator: what the test pins is what runs.
from dagster._utils.schedules import cron_string_iterator

from bis_assets.partitions import account_partitions
from bis_assets.resources import AccountsResource
from bis_assets.schedules import (
    CRON_ENV,
    TIMEZONE_ENV,
    build_daily_sync,
    daily_sync_from_env,
)
from bis_assets_tests.conftest import write_accounts_file

NEW_YORK = "America/New_York"


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    # A context given resources rebuilds its instance from a reference, which
    # an ephemeral instance lacks.
    with instance_for_test() as instance:
        instance.add_dynamic_partitions(account_partitions.name, ["acct_a", "acct_b"])
        yield instance


@pytest.fixture
def accounts(tmp_path: Path) -> AccountsResource:
    path = write_accounts_file(
        tmp_path / "accounts.yaml", {"acct_a": "TOKEN_A", "acct_b": "TOKEN_B"}
    )

    return AccountsResource(path=str(path))


def ticks(cron: str, timezone: str, first_day: datetime, count: int) -> list[datetime]:
    iterator = cron_string_iterator(first_day.timestamp(), cron, timezone)

    return [next(iterator) for _ in range(count)]


def evaluate(schedule, instance, accounts, tick: datetime) -> list[RunRequest] | SkipReason:
    context = build_schedule_context(
        instance=instance, scheduled_execution_time=tick, resources={"accounts": accounts}
    )

    return schedule(context)


def test_daily_sync_stays_at_three_local_across_spring_forward(instance, accounts) -> None:
    schedule = build_daily_sync("0 3 * * *", NEW_YORK)
    week = ticks("0 3 * * *", NEW_YORK, datetime(2026, 3, 5, tzinfo=UTC), 7)

    assert [tick.strftime("%m-%d %H:%M") for tick in week] == [
        f"03-{day:02d} 03:00" for day in range(5, 12)
    ]
    # 2026-03-08 02:00 EST becomes 03:00 EDT: 08:00 UTC before, 07:00 after.
    assert [tick.astimezone(UTC).strftime("%m-%d %H:%M") for tick in week] == [
        "03-05 08:00", "03-06 08:00", "03-07 08:00",
        "03-08 07:00", "03-09 07:00", "03-10 07:00", "03-11 07:00",
    ]

    run_keys = [
        [request.run_key for request in evaluate(schedule, instance, accounts, tick)]
        for tick in week[2:4]
    ]
    assert run_keys == [
        ["scheduled:2026-03-07T03:00-0500:acct_a", "scheduled:2026-03-07T03:00-0500:acct_b"],
        ["scheduled:2026-03-08T03:00-0400:acct_a", "scheduled:2026-03-08T03:00-0400:acct_b"],
    ]


def test_daily_sync_stays_at_three_local_across_fall_back() -> None:
    week = ticks("0 3 * * *", NEW_YORK, datetime(2026, 10, 30, tzinfo=UTC), 4)

    # 2026-11-01 02:00 EDT falls back to 01:00 EST: 07:00 UTC before, 08:00 after.
    assert [tick.astimezone(UTC).strftime("%m-%d %H:%M") for tick in week] == [
        "10-30 07:00", "10-31 07:00", "11-01 08:00", "11-02 08:00",
    ]


def test_one_run_per_account_with_a_key_stable_per_tick(instance, accounts) -> None:
    schedule = build_daily_sync("0 3 * * *", "UTC")
    tick = datetime(2026, 6, 1, 3, tzinfo=UTC)

    first = evaluate(schedule, instance, accounts, tick)
    again = evaluate(schedule, instance, accounts, tick)
    next_day = evaluate(schedule, instance, accounts, tick.replace(day=2))

    assert [(request.partition_key, request.run_key) for request in first] == [
        ("acct_a", "scheduled:2026-06-01T03:00+0000:acct_a"),
        ("acct_b", "scheduled:2026-06-01T03:00+0000:acct_b"),
    ]
    assert [request.run_key for request in again] == [request.run_key for request in first]
    assert [request.run_key for request in next_day] == [
        "scheduled:2026-06-02T03:00+0000:acct_a",
        "scheduled:2026-06-02T03:00+0000:acct_b",
    ]


def test_accounts_left_out_of_the_file_are_not_synced(instance, tmp_path: Path) -> None:
    path = write_accounts_file(tmp_path / "accounts.yaml", {"acct_b": "TOKEN_B"})
    schedule = build_daily_sync("0 3 * * *", "UTC")
    tick = datetime(2026, 6, 1, 3, tzinfo=UTC)

    requests = evaluate(schedule, instance, AccountsResource(path=str(path)), tick)

    assert [request.partition_key for request in requests] == ["acct_b"]


def test_no_partitions_yet_skips_with_a_reason(accounts) -> None:
    schedule = build_daily_sync("0 3 * * *", "UTC")

    with instance_for_test() as empty:
        skipped = evaluate(schedule, empty, accounts, datetime.now(UTC))

    assert isinstance(skipped, SkipReason)
    assert "accounts sensor" in skipped.skip_message


def test_cron_and_time_zone_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(CRON_ENV, raising=False)
    monkeypatch.delenv(TIMEZONE_ENV, raising=False)
    default = daily_sync_from_env()
    monkeypatch.setenv(CRON_ENV, "30 5 * * 1-5")
    monkeypatch.setenv(TIMEZONE_ENV, "Europe/Paris")
    custom = daily_sync_from_env()

    assert (default.cron_schedule, default.execution_timezone) == ("0 3 * * *", "UTC")
    assert (custom.cron_schedule, custom.execution_timezone) == ("30 5 * * 1-5", "Europe/Paris")


@pytest.mark.parametrize(
    ("cron", "timezone", "named"),
    [("0 3 * *", "UTC", CRON_ENV), ("0 3 * * *", "Mars/Olympus_Mons", TIMEZONE_ENV)],
)
def test_a_bad_setting_names_its_variable(monkeypatch, cron, timezone, named) -> None:
    monkeypatch.setenv(CRON_ENV, cron)
    monkeypatch.setenv(TIMEZONE_ENV, timezone)

    with pytest.raises(ValueError, match=f"{named}=") as raised:
        daily_sync_from_env()

    assert "IANA time zone" in str(raised.value)
