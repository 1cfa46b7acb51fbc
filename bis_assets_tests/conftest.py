"""Shared fixtures: real PostgreSQL servers and a fresh database per test."""

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import yaml
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from bis_assets.embedded import DATABASE_URL_ENV, create_database, start_embedded

MACHINE_POSTGRES_URL = os.environ.get(
    "BIS_TEST_MACHINE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_database_numbers = itertools.count()


def machine_postgres_answers() -> bool:
    """Whether the machine's PostgreSQL at ``MACHINE_POSTGRES_URL`` takes a connection."""
    try:
        psycopg2.connect(MACHINE_POSTGRES_URL, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False

    return True


@pytest.fixture(scope="session")
def embedded_admin_url() -> Iterator[str]:
    # Not under pytest's temporary root: as root, the server runs as a user of
    # its own, and each new pytest session makes that root private again.
    folder = Path(tempfile.mkdtemp(prefix="bis-test-pg-"))
    server = start_embedded(folder)
    yield server.url("postgres")

    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", params=["embedded", "machine"])
def admin_url(request: pytest.FixtureRequest) -> str:
    """The maintenance database of each server the suite runs against."""
    if request.param == "machine":
        if not machine_postgres_answers():
            pytest.skip(f"no PostgreSQL answers at {MACHINE_POSTGRES_URL}")
        return MACHINE_POSTGRES_URL

    return request.getfixturevalue("embedded_admin_url")


@pytest.fixture
def database_url(admin_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A new empty database, set as the warehouse for the test, dropped after."""
    name = f"bis_test_{os.getpid()}_{next(_database_numbers)}"
    create_database(admin_url, name)
    url = make_dsn(admin_url, dbname=name)
    monkeypatch.setenv(DATABASE_URL_ENV, url)
    yield url

    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
    connection.close()


@pytest.fixture
def latin1_database_url(admin_url: str) -> Iterator[str]:
    """A database encoded LATIN1, which the table cannot live in; dropped after."""
    name = f"bis_test_latin1_{os.getpid()}_{next(_database_numbers)}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "CREATE DATABASE {} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                "TEMPLATE template0"
            ).format(sql.Identifier(name))
        )
    yield make_dsn(admin_url, dbname=name)

    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


def write_accounts_file(path: Path, accounts: dict[str, str], base_url: str = "") -> Path:
    """An accounts file for ``accounts`` (id -> token variable) at ``path``."""
    entries = [
        {"id": account_id, "source_id": f"src-{account_id}", "token_env": token_env}
        | ({"base_url": base_url} if base_url else {})
        for account_id, token_env in accounts.items()
    ]
    path.write_text(yaml.safe_dump({"accounts": entries}), encoding="utf-8")

    return path


pytest_plugins = ["bis_assets_tests.harness", "bis_assets_tests.dagster_dev"]
