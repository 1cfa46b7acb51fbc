"""``bis-assets``: the demo sync, the Dagster UI, and our API server, from one command.

``bis-assets demo`` syncs the three real storefront catalogs, served by our
own Back In Stock API server, through Dagster into PostgreSQL and prints a
summary per account; ``bis-assets ui`` opens the same setup in the Dagster UI;
``bis-assets check`` says what plain ``dagster`` commands would miss.
"""

import argparse
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bis_assets.accounts import ACCOUNTS_FILE_ENV, DEMO_ACCOUNTS_FILE, load_accounts
from bis_assets.api_server import BackInStockServer
from bis_assets.api_server.catalog import storefront_rows
from bis_assets.client import API_BASE_URL_ENV
from bis_assets.embedded import (
    DATABASE_URL_ENV,
    STORAGE_URL_ENV,
    start_embedded,
    storage_url_for,
)
from bis_assets.preflight import dagster_home
from bis_assets.warehouse import shown_dsn

UI_LOCK_KEY = 0x6269_7375_6900  # the advisory lock a running ui holds in the storage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bis-assets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="sync the demo stores headless, print a summary")
    demo.add_argument("--seed", type=int, default=0, help="seed of the notification figures")
    ui = commands.add_parser("ui", help="the demo stores in the Dagster UI (dagster dev)")
    ui.add_argument("--port", type=int, default=3000, help="port of the Dagster UI")
    ui.add_argument("--seed", type=int, default=0, help="seed of the notification figures")
    commands.add_parser(
        "check", help="say what plain dagster commands need that is missing (exit 1 if any)"
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "check":
        return _check()
    # A SIGTERM unwinds like Ctrl-C, so the servers started here are stopped.
    # SIGINT gets Python's handler even where the shell ignored it (a job
    # started with &): the child then starts with SIGINT at its default, and
    # dagster dev, which maps SIGTERM onto SIGINT, can be stopped.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if arguments.command == "demo":
        from bis_assets.demo import run_demo

        with demo_environment(arguments.seed):
            return run_demo()

    with demo_environment(arguments.seed), _only_ui_of_storage():
        # The guard holds only if Dagster keeps the instance where it looked.
        home = dagster_home()
        if not home.ready:
            raise SystemExit(f"bis-assets: DAGSTER_HOME: {home.detail}")
        return _run_dagster_dev(arguments.port)


@contextmanager
def _only_ui_of_storage() -> Iterator[None]:
    """Refuse a second ``ui`` on one Dagster storage: two daemons would share it.

    The storage is the instance, whatever DAGSTER_HOME says, so the guard is
    a session advisory lock there, held while the UI runs. Each ``ui`` also
    serves the demo stores with tokens of its own, which the other's runs
    would not know.
    """
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    engine = sqlalchemy.create_engine(os.environ[STORAGE_URL_ENV], poolclass=NullPool)
    try:
        with engine.connect() as connection:
            lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
            if not connection.execute(lock, {"key": UI_LOCK_KEY}).scalar():
                raise SystemExit(
                    "bis-assets: another bis-assets ui runs on this Dagster storage; use "
                    f"that one, or give this one its own {STORAGE_URL_ENV} or BIS_HOME"
                )
            yield  # the lock ends with the session
    finally:
        engine.dispose()


@contextmanager
def demo_environment(seed: int) -> Iterator[None]:
    """Databases, Dagster home, and our API server serving the demo stores.

    Starts the embedded PostgreSQL unless ``BIS_DATABASE_URL`` is set; the
    last ``bis-assets`` process using it stops it on the way out. The demo
    syncs its own three stores, whatever ``BIS_ACCOUNTS_FILE`` says.
    """
    with ExitStack() as stack:
        _set_dagster_home()
        yours = bool(os.environ.get(DATABASE_URL_ENV) or os.environ.get(STORAGE_URL_ENV))
        if not os.environ.get(DATABASE_URL_ENV):
            embedded = start_embedded(shared=True)
            stack.callback(embedded.release)
            _set_env(DATABASE_URL_ENV, embedded.warehouse_url, stack)
            if not os.environ.get(STORAGE_URL_ENV):
                _set_env(STORAGE_URL_ENV, embedded.storage_url, stack)
        else:
            shown = shown_dsn(os.environ[DATABASE_URL_ENV])
            print(f"bis-assets: the demo stores go to {DATABASE_URL_ENV} ({shown})", flush=True)
            if not os.environ.get(STORAGE_URL_ENV):
                storage = storage_url_for(os.environ[DATABASE_URL_ENV])
                _set_env(STORAGE_URL_ENV, storage, stack)
        if yours:  # ours is made ready above; a database of yours is checked first
            _refuse_unready_databases()

        api = stack.enter_context(BackInStockServer())
        _set_env(API_BASE_URL_ENV, api.base_url, stack)
        if os.environ.get(ACCOUNTS_FILE_ENV, str(DEMO_ACCOUNTS_FILE)) != str(DEMO_ACCOUNTS_FILE):
            print(f"bis-assets: the demo syncs its own stores; {ACCOUNTS_FILE_ENV} is not read")
        _set_env(ACCOUNTS_FILE_ENV, str(DEMO_ACCOUNTS_FILE), stack)
        for account in load_accounts(DEMO_ACCOUNTS_FILE).values():
            # Fresh fake tokens each run: our server is the only one that knows them.
            token = secrets.token_hex(16)
            api.add_account(token, storefront_rows(account.id, seed), name=account.id)
            _set_env(account.token_env, token, stack)
        yield


def _check() -> int:
    from bis_assets.preflight import check_environment, report

    findings = check_environment()
    print(report(findings))

    return 0 if all(finding.ready for finding in findings) else 1


def _refuse_unready_databases() -> None:
    """Stop with one line per database that cannot be used, before Dagster starts."""
    from bis_assets.preflight import check_databases, report

    findings = check_databases()
    if not all(finding.ready for finding in findings):
        raise SystemExit(f"bis-assets: a database cannot be used:\n{report(findings)}")


def _set_dagster_home() -> None:
    if os.environ.get("DAGSTER_HOME"):
        return
    if not Path("dagster.yaml").is_file():
        raise SystemExit(
            "bis-assets: DAGSTER_HOME is not set and there is no dagster.yaml here; "
            "run from the project folder or set DAGSTER_HOME"
        )
    os.environ["DAGSTER_HOME"] = str(Path.cwd())


def _set_env(name: str, value: str, stack: ExitStack) -> None:
    previous = os.environ.get(name)
    os.environ[name] = value
    stack.callback(_restore_env, name, previous)


def _restore_env(name: str, previous: str | None) -> None:
    if previous is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = previous


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _run_dagster_dev(port: int) -> int:
    command = [
        sys.executable, "-m", "dagster", "dev",
        "-m", "bis_assets.definitions", "-h", "127.0.0.1", "-p", str(port),
    ]
    print(f"bis-assets: Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    # A process group of its own: Ctrl-C reaches only us, and we pass it on;
    # should dagster dev not end its children in time, the group is ended.
    dagster_dev = subprocess.Popen(command, process_group=0)
    try:
        return dagster_dev.wait()
    except KeyboardInterrupt:
        dagster_dev.send_signal(signal.SIGINT)  # dagster dev shuts down its children
        try:
            dagster_dev.wait(timeout=30)
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            pass  # too slow, or asked twice: no more waiting
        _end_group(dagster_dev.pid)
        dagster_dev.wait(timeout=10)
        return 0


def _end_group(group: int) -> None:
    """SIGKILL whatever is left of a process group we started."""
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass  # every member has ended


if __name__ == "__main__":
    sys.exit(main())
