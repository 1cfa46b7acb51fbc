"""``bis-assets``: its embedded server shared between processes, its stop, its demo stores."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import psycopg2
import pytest
import requests
from psycopg2.extensions import make_dsn

from bis_assets.accounts import ACCOUNTS_FILE_ENV, DEMO_ACCOUNTS_FILE, load_accounts
from bis_assets.cli import UI_LOCK_KEY, demo_environment, main
from bis_assets.embedded import (
    DATABASE_URL_ENV,
    STORAGE_URL_ENV,
    start_embedded,
    storage_url_for,
)
from bis_assets_tests.conftest import write_accounts_file
from bis_assets_tests.dagster_dev import PROJECT, free_port, wait_for

HOLDER = """
import sys
from pathlib import Path
from bis_assets.embedded import start_embedded

server = start_embedded(Path(sys.argv[1]), shared=True)
print(server.url("postgres"), flush=True)
sys.stdin.readline()  # holds the server until the test says so
server.release()
"""
UI_START_TIMEOUT = 120.0
UI_STOP_TIMEOUT = 60.0


@pytest.fixture
def server_folder() -> Iterator[Path]:
    """A folder for an embedded server, stopped and removed after the test."""
    # Outside pytest's temporary root, for the reason conftest gives.
    folder = Path(tempfile.mkdtemp(prefix="bis-test-cli-"))
    yield folder

    if (folder / "pgdata" / "postmaster.pid").exists():
        start_embedded(folder).stop()
    shutil.rmtree(folder, ignore_errors=True)


def answers(url: str) -> bool:
    try:
        psycopg2.connect(url, connect_timeout=2).close()
    except psycopg2.OperationalError:
        return False

    return True


def hold(folder: Path) -> tuple[subprocess.Popen, str]:
    """A process that starts or joins the shared server in ``folder``; and its URL."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    return holder, holder.stdout.readline().strip()


def let_go(holder: subprocess.Popen) -> None:
    holder.stdin.write("\n")
    holder.stdin.flush()
    assert holder.wait(timeout=30) == 0


def test_the_last_process_to_let_go_stops_the_shared_server(server_folder):
    first, url = hold(server_folder)
    second, joined_url = hold(server_folder)

    let_go(first)
    still_up = answers(url)
    let_go(second)

    assert joined_url == url
    assert still_up
    assert not answers(url)
    assert not (server_folder / "pgdata" / "postmaster.pid").exists()


def test_the_demo_syncs_its_own_stores_whatever_the_accounts_file(
    tmp_path, database_url, monkeypatch, capsys
):
    mine = write_accounts_file(tmp_path / "mine.yaml", {"good": "GOOD_TOKEN"})
    monkeypatch.setenv(ACCOUNTS_FILE_ENV, str(mine))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with demo_environment(seed=0):
        inside = os.environ[ACCOUNTS_FILE_ENV]
        tokens_set = [
            bool(os.environ.get(account.token_env))
            for account in load_accounts(DEMO_ACCOUNTS_FILE).values()
        ]

    assert inside == str(DEMO_ACCOUNTS_FILE)
    assert tokens_set == [True, True, True]
    assert os.environ[ACCOUNTS_FILE_ENV] == str(mine)
    assert f"{ACCOUNTS_FILE_ENV} is not read" in capsys.readouterr().out


def test_the_demo_stops_at_a_warehouse_that_is_not_there(database_url, tmp_path, monkeypatch):
    missing = make_dsn(database_url, dbname="bis_no_such_demo_database", password="pw-secret")
    monkeypatch.setenv(DATABASE_URL_ENV, missing)
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with pytest.raises(SystemExit) as stopped:
        main(["demo"])

    lines = str(stopped.value).splitlines()
    assert lines[0] == "bis-assets: a database cannot be used:"
    assert [line.split()[:2] for line in lines[1:]] == [
        ["FIX", STORAGE_URL_ENV],
        ["FIX", DATABASE_URL_ENV],
    ]
    assert all('"bis_no_such_demo_database" does not exist' in line for line in lines[1:])
    assert "pw-secret" not in str(stopped.value)


def test_a_second_ui_on_one_storage_is_refused(database_url, tmp_path, monkeypatch):
    monkeypatch.setenv(DATABASE_URL_ENV, database_url)  # the storage follows it
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    first_ui = psycopg2.connect(database_url)
    try:
        with first_ui.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (UI_LOCK_KEY,))
        with pytest.raises(SystemExit) as refused:
            main(["ui", "--port", str(free_port())])
    finally:
        first_ui.close()

    assert str(refused.value) == (
        "bis-assets: another bis-assets ui runs on this Dagster storage; use that one, "
        f"or give this one its own {STORAGE_URL_ENV} or BIS_HOME"
    )


@pytest.mark.parametrize("signals", [1, 2], ids=["one SIGTERM", "two SIGTERMs"])
def test_a_background_ui_ends_with_every_process_it_started(server_folder, tmp_path, signals):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT / "dagster.yaml", home / "dagster.yaml")
    env = {name: value for name, value in os.environ.items() if not name.startswith("BIS_")}
    env |= {"BIS_HOME": str(server_folder), "DAGSTER_HOME": str(home)}
    port = free_port()
    # As a shell starts a job with &: SIGINT ignored, inherited through exec.
    command = [
        "sh", "-c", "trap '' INT; exec \"$@\"", "sh",
        sys.executable, "-m", "bis_assets.cli", "ui", "--port", str(port),
    ]
    ui = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    started: list[psutil.Process] = []
    try:
        wait_for("the UI to answer", UI_START_TIMEOUT, lambda: _ui_answers(port))
        started = psutil.Process(ui.pid).children(recursive=True)

        for _ in range(signals):
            ui.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the second arrives while dagster dev shuts down
        exit_code = ui.wait(timeout=UI_STOP_TIMEOUT)
        _, alive = psutil.wait_procs(started, timeout=10)
    finally:
        _kill(ui, started)

    assert exit_code == 0
    assert len(started) >= 3  # dagster dev, its webserver, its daemon, ...
    assert [process.pid for process in alive] == []
    assert not (server_folder / "pgdata" / "postmaster.pid").exists()


def _ui_answers(port: int) -> bool:
    try:
        response = requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2)
    except requests.RequestException:
        return False

    return response.ok


def _kill(ui: subprocess.Popen, started: list[psutil.Process]) -> None:
    """SIGKILL what is left of what the test started, should it have failed."""
    for process in [*started, ui]:
        try:
            process.kill()
        except (psutil.NoSuchProcess, ProcessLookupError):
            pass
    ui.wait(timeout=10)


def test_the_demo_keeps_a_storage_url_of_your_own(
    server_folder, database_url, tmp_path, monkeypatch
):
    storage = storage_url_for(database_url)
    monkeypatch.delenv(DATABASE_URL_ENV)
    monkeypatch.setenv(STORAGE_URL_ENV, storage)
    monkeypatch.setenv("BIS_HOME", str(server_folder))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with demo_environment(seed=0):
        inside = (os.environ[STORAGE_URL_ENV], os.environ[DATABASE_URL_ENV])

    assert inside[0] == storage
    assert str(server_folder) in inside[1]  # the warehouse is the embedded one


def test_a_ui_is_refused_where_dagster_would_keep_the_instance_elsewhere(
    database_url, tmp_path, monkeypatch
):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv(DATABASE_URL_ENV, database_url)
    monkeypatch.delenv(STORAGE_URL_ENV, raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))

    with pytest.raises(SystemExit) as refused:
        main(["ui", "--port", str(free_port())])

    assert str(refused.value).startswith("bis-assets: DAGSTER_HOME: ")
    assert "does not keep Dagster's storage at BIS_DAGSTER_STORAGE_URL" in str(refused.value)
