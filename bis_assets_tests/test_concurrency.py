"""Syncs at the same time: no race, no deadlock, one account at a time."""

import random
import time
from datetime import timedelta

import pandas as pd

from bis_assets.api_server.catalog import synthetic_rows
from bis_assets.transform import shape_rows
from bis_assets.warehouse import TableName, connect, ensure_table, load
from bis_assets_tests.harness import run_at_once, table_rows
from bis_assets_tests.test_load import SYNCED_AT

TABLE = TableName()


def loader(database_url: str, frame, accounts: list[str], delay: float = 0.0):
    def job() -> None:
        with connect(database_url) as connection:
            ensure_table(connection, TABLE)
            with connection, connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            time.sleep(delay)
            load(connection, TABLE, frame, complete_accounts=accounts)

    return job


def test_many_first_syncs_at_once_create_the_table_once(database_url):
    frames = [
        shape_rows(synthetic_rows(50, seed=n), f"acct_{n}", "src", SYNCED_AT).frame
        for n in range(8)
    ]

    errors = run_at_once([loader(database_url, f, [f"acct_{n}"]) for n, f in enumerate(frames)])

    assert errors == []
    stored = table_rows(database_url)
    assert len(stored) == sum(len(frame) for frame in frames)


def test_overlapping_accounts_in_opposite_orders_do_not_deadlock(database_url):
    rows = synthetic_rows(2_000, seed=11)
    both = [shape_rows(rows, account, "src", SYNCED_AT).frame for account in ("a", "b")]
    forward = pd.concat(both, ignore_index=True)
    backward = pd.concat(both[::-1], ignore_index=True).sample(frac=1, random_state=1)

    jobs = []
    for attempt in range(3):
        changed = [frame.assign(notifications_count=attempt) for frame in (forward, backward)]
        jobs += [loader(database_url, frame, ["a", "b"]) for frame in changed]
    random.Random(5).shuffle(jobs)
    errors = run_at_once(jobs)

    assert errors == []
    assert len(table_rows(database_url)) == 4_000


def test_the_same_account_twice_at_once_is_serialized(database_url):
    rows = synthetic_rows(3_000, seed=1)
    first = shape_rows(rows, "acct_a", "src", SYNCED_AT).frame
    later = SYNCED_AT + timedelta(hours=1)
    second = shape_rows(rows, "acct_a", "src", later).frame.assign(unsent_notifications_count=-7)
    with connect(database_url) as connection:
        ensure_table(connection, TABLE)

    errors = run_at_once(
        [loader(database_url, first, ["acct_a"]), loader(database_url, second, ["acct_a"])]
    )

    assert errors == []
    stored = table_rows(database_url)
    assert len(stored) == 3_000
    # One sync wholly after the other (every row differs between them), so
    # every row comes from the one that committed last.
    assert {row["__synced_at"] for row in stored} in ({SYNCED_AT}, {later})
    if stored[0]["__synced_at"] == later:
        assert {row["unsent_notifications_count"] for row in stored} == {-7}


def test_more_rows_than_a_statement_can_bind(database_url):
    frame = shape_rows(synthetic_rows(70_000, seed=2), "acct_a", "src", SYNCED_AT).frame

    with connect(database_url) as connection:
        ensure_table(connection, TABLE)
        counts = load(connection, TABLE, frame)

    assert counts.total.inserted == len(frame) > 65_535
