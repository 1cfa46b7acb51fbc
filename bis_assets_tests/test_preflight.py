"""``bis-assets check`` names each thing plain ``dagster`` commands would miss."""

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import make_dsn

from bis_assets.accounts import ACCOUNTS_FILE_ENV
from bis_assets.cli import main
from bis_assets.embedded import DATABASE_URL_ENV, STORAGE_URL_ENV, storage_url_for
from bis_assets_tests.conftest import write_accounts_file
from bis_assets_tests.dagster_dev import PROJECT

TOKEN_ENV = "BIS_CHECK_TOKEN_SHOP"


@pytest.fixture
def ready_environment(tmp_path, database_url, monkeypatch) -> dict[str, str]:
    """Everything a deployment needs, set; the test then breaks one part."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    accounts = write_accounts_file(tmp_path / "accounts.yaml", {"shop": TOKEN_ENV})
    variables = {
        "DAGSTER_HOME": str(home),
        STORAGE_URL_ENV: storage_url_for(database_url),
        DATABASE_URL_ENV: database_url,
        ACCOUNTS_FILE_ENV: str(accounts),
        TOKEN_ENV: "tok-check-secret",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    return variables


def check(capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """The exit code of ``bis-assets check`` and its lines, spaces squeezed."""
    code = main(["check"])

    return code, [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]


def fixes(lines: list[str]) -> list[str]:
    """The lines that ask for a repair."""
    return [line for line in lines if line.startswith("FIX")]


def use_for_both(monkeypatch: pytest.MonkeyPatch, warehouse_url: str) -> None:
    """Point the warehouse and Dagster's storage at the same database."""
    monkeypatch.setenv(DATABASE_URL_ENV, warehouse_url)
    monkeypatch.setenv(STORAGE_URL_ENV, storage_url_for(warehouse_url))


def test_a_ready_environment_passes(ready_environment, capsys):
    code, lines = check(capsys)

    assert code == 0
    assert [line.split()[:2] for line in lines] == [
        ["ok", "DAGSTER_HOME"],
        ["ok", STORAGE_URL_ENV],
        ["ok", DATABASE_URL_ENV],
        ["ok", "BIS_API_BASE_URL"],
        ["ok", ACCOUNTS_FILE_ENV],
        ["ok", "account"],
    ]
    assert lines[-1] == f"ok account 'shop': {TOKEN_ENV} set"
    assert "tok-check-secret" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("DAGSTER_HOME", None, "FIX DAGSTER_HOME not set: Dagster would keep runs in a"),
        (STORAGE_URL_ENV, None, f"FIX {STORAGE_URL_ENV} not set: dagster.yaml reads"),
        (STORAGE_URL_ENV, "notaurl", f"FIX {STORAGE_URL_ENV} not a readable URL"),
        (
            STORAGE_URL_ENV,
            "postgresql+psycopg2://postgres@127.0.0.1:pw-secret/postgres",
            f"FIX {STORAGE_URL_ENV} not a readable URL",
        ),
        (
            STORAGE_URL_ENV,
            "postgresql+psycopg2://postgres:p@pw-secret@127.0.0.1/postgres",
            f"FIX {STORAGE_URL_ENV} not a readable URL",
        ),
        (
            DATABASE_URL_ENV,
            "postgresql://postgres:pa/pw-secret@127.0.0.1/postgres",
            f"FIX {DATABASE_URL_ENV} the warehouse address is not a readable libpq URL",
        ),
        (
            STORAGE_URL_ENV,
            "postgresql://postgres:pw-secret@127.0.0.1:5432/postgres",
            f"FIX {STORAGE_URL_ENV} postgresql://postgres:***@127.0.0.1:5432/postgres "
            "must start with postgresql+psycopg2://",
        ),
        (DATABASE_URL_ENV, None, f"FIX {DATABASE_URL_ENV} not set: set it to the warehouse"),
        ("BIS_API_BASE_URL", "http://127.0.0.1:1/?x=1", "FIX BIS_API_BASE_URL base_url must not"),
        (ACCOUNTS_FILE_ENV, None, f"FIX {ACCOUNTS_FILE_ENV} {ACCOUNTS_FILE_ENV} is not set"),
        (TOKEN_ENV, None, f"FIX account 'shop': {TOKEN_ENV} not set or empty"),
    ],
)
def test_each_missing_part_is_named_with_its_repair(
    ready_environment, monkeypatch, capsys, variable, value, expected
):
    if value is None:
        monkeypatch.delenv(variable)
    else:
        monkeypatch.setenv(variable, value)

    code, lines = check(capsys)

    assert code == 1
    assert fixes(lines) == [
        line for line in lines if line.startswith(expected)
    ]
    assert len(fixes(lines)) == 1
    assert "pw-secret" not in "\n".join(lines)


def test_a_database_that_is_not_there_is_named_for_both_urls(
    ready_environment, monkeypatch, capsys
):
    missing = "bis_check_no_such_database"
    warehouse = make_dsn(ready_environment[DATABASE_URL_ENV], dbname=missing)
    use_for_both(monkeypatch, warehouse)

    code, lines = check(capsys)

    failures = fixes(lines)
    assert code == 1
    assert [line.split()[1] for line in failures] == [STORAGE_URL_ENV, DATABASE_URL_ENV]
    assert all(f'database "{missing}" does not exist' in line for line in failures)


@pytest.mark.parametrize(
    ("home", "config", "expected"),
    [
        ("relative", None, "must be an absolute path"),
        ("absolute", "storage: [unclosed\n", "dagster.yaml cannot be read (line 2)"),
        ("absolute", "telemetry:\n  enabled: false\n", "does not keep Dagster's storage at"),
    ],
)
def test_a_dagster_home_dagster_would_refuse_or_ignore_is_named(
    ready_environment, monkeypatch, capsys, tmp_path, home, config, expected
):
    if home == "relative":
        monkeypatch.setenv("DAGSTER_HOME", "../dagster_home")
    else:
        (Path(ready_environment["DAGSTER_HOME"]) / "dagster.yaml").write_text(config)

    code, lines = check(capsys)

    failures = fixes(lines)
    assert code == 1
    assert len(failures) == 1
    assert failures[0].startswith("FIX DAGSTER_HOME ")
    assert expected in failures[0]


@pytest.mark.parametrize(
    ("database_url", "storage_url"),
    [
        (
            "postgresql://u:p%40ss@db.example:6432/wh?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgresql+psycopg2://u:p%40ss@db.example:6432/wh"
            "?sslmode=verify-full&sslrootcert=/ca.pem",
        ),
        (
            "host=/run/pg dbname=wh user=u sslmode=disable",
            "postgresql+psycopg2://u@/wh?host=%2Frun%2Fpg&sslmode=disable",
        ),
        (
            "host=/run/pg port=5433 dbname=wh user=u",
            "postgresql+psycopg2://u@/wh?host=%2Frun%2Fpg&port=5433",
        ),
    ],
)
def test_the_storage_url_keeps_every_setting_of_the_warehouse_url(database_url, storage_url):
    assert storage_url_for(database_url) == storage_url


def test_a_dagster_yaml_dagster_itself_refuses_is_named(ready_environment, capsys):
    config = Path(ready_environment["DAGSTER_HOME"]) / "dagster.yaml"
    config.write_text(config.read_text() + "run_monitoring:\n  enabled: yes_please\n")

    code, lines = check(capsys)

    failures = fixes(lines)
    assert code == 1
    assert [line.split()[1] for line in failures] == ["DAGSTER_HOME"]
    assert "run_monitoring:enabled" in failures[0]


def test_a_dagster_home_under_the_home_folder_is_read_as_dagster_reads_it(
    ready_environment, monkeypatch, capsys
):
    home = Path(ready_environment["DAGSTER_HOME"])
    monkeypatch.setenv("HOME", str(home.parent))
    monkeypatch.setenv("DAGSTER_HOME", f"~/{home.name}")

    code, lines = check(capsys)

    assert code == 0
    assert lines[0] == f"ok DAGSTER_HOME {home}"


@pytest.fixture
def unprivileged_user(admin_url) -> Iterator[str]:
    """A login role that owns nothing and may create nothing, dropped after."""
    role = f"bis_test_plain_{os.getpid()}"
    admin = psycopg2.connect(admin_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role

    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
    admin.close()


def test_users_that_may_not_create_the_tables_are_named(
    ready_environment, database_url, unprivileged_user, monkeypatch, capsys
):
    as_plain_user = make_dsn(database_url, user=unprivileged_user)
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    use_for_both(monkeypatch, as_plain_user)

    code, lines = check(capsys)

    failures = fixes(lines)
    assert code == 1
    assert [line.split()[1] for line in failures] == [STORAGE_URL_ENV, DATABASE_URL_ENV]
    assert "may not create Dagster's tables in the default schema" in failures[0]
    assert "may not create back_in_stock.notifications" in failures[1]


def test_a_warehouse_not_in_utf8_is_named(
    ready_environment, latin1_database_url, monkeypatch, capsys
):
    monkeypatch.setenv(DATABASE_URL_ENV, latin1_database_url)

    code, lines = check(capsys)

    failures = fixes(lines)
    assert code == 1
    assert len(failures) == 1
    assert "the database is encoded LATIN1; the table needs UTF8" in failures[0]


def test_a_password_in_the_storage_urls_query_is_never_shown(
    ready_environment, monkeypatch, capsys
):
    storage = ready_environment[STORAGE_URL_ENV]
    joiner = "&" if "?" in storage else "?"
    monkeypatch.setenv(STORAGE_URL_ENV, f"{storage}{joiner}password=pw-secret")

    code, lines = check(capsys)

    assert code == 0
    assert lines[1].startswith(f"ok {STORAGE_URL_ENV} postgresql+psycopg2://")
    assert lines[1].endswith("?…")
    assert "pw-secret" not in "\n".join(lines)


def test_a_table_of_someone_elses_is_named(ready_environment, database_url, capsys):
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE SCHEMA back_in_stock")
        cursor.execute("CREATE TABLE back_in_stock.notifications (x int)")

    code, lines = check(capsys)

    failures = fixes(lines)
    assert code == 1
    assert len(failures) == 1
    assert "table back_in_stock.notifications exists without columns" in failures[0]
