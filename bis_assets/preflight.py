"""``bis-assets check``: what plain ``dagster`` commands need, each named when missing.

``bis-assets demo`` and ``ui`` set everything up themselves. A deployment
runs ``dagster dev``, ``dagster-webserver`` or ``dagster-daemon`` instead,
and those fail on a missing variable or database with a long traceback;
this check says in one line each what is missing and how to set it.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    import sqlalchemy

from bis_assets.accounts import AccountsFileError, load_accounts
from bis_assets.client import API_BASE_URL_ENV, DEFAULT_BASE_URL, check_base_url
from bis_assets.embedded import DATABASE_URL_ENV, STORAGE_URL_ENV
from bis_assets.errors import WarehouseError
from bis_assets.warehouse import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    TableName,
    accounts_with_live_rows,
    connect,
    shown_dsn,
)

STORAGE_DRIVER = "postgresql+psycopg2"
CONNECT_TIMEOUT_SECONDS = 5


@dataclass(frozen=True)
class Finding:
    """One thing checked: what, whether it is ready, and what was found or is to do."""

    subject: str
    ready: bool
    detail: str


def check_environment() -> list[Finding]:
    """Every finding, in the order a person would fix them."""
    return [
        dagster_home(),
        _dagster_storage(),
        _warehouse(),
        _api_address(),
        *_accounts(),
    ]


def check_databases() -> list[Finding]:
    """The findings for Dagster's storage and the warehouse alone."""
    return [_dagster_storage(), _warehouse()]


def dagster_home() -> Finding:
    """Whether DAGSTER_HOME holds a dagster.yaml that Dagster takes, storing at our URL."""
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return Finding(
            "DAGSTER_HOME", False,
            "not set: Dagster would keep runs in a temporary folder; set it to a folder "
            "holding this project's dagster.yaml",
        )
    home = os.path.expanduser(home)  # as Dagster reads it
    if not Path(home).is_absolute():
        return Finding("DAGSTER_HOME", False, f"{home} must be an absolute path")
    config_path = Path(home) / "dagster.yaml"
    if not config_path.is_file():
        return Finding(
            "DAGSTER_HOME", False,
            f"{home} holds no dagster.yaml; copy this project's dagster.yaml there",
        )
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        return Finding("DAGSTER_HOME", False, f"{config_path} cannot be read{line}")
    if _postgres_url_setting(config) != {"env": STORAGE_URL_ENV}:
        return Finding(
            "DAGSTER_HOME", False,
            f"{config_path} does not keep Dagster's storage at {STORAGE_URL_ENV}; "
            "copy this project's dagster.yaml there",
        )
    refusal = _dagster_refusal(home)
    if refusal:
        return Finding("DAGSTER_HOME", False, f"{config_path}: {refusal}")

    return Finding("DAGSTER_HOME", True, home)


def _dagster_refusal(home: str) -> str | None:
    """What Dagster's own validation of the instance's config says is wrong, if anything."""
    from dagster import DagsterInvalidConfigError

    # Dagster's loader of dagster.yaml, which has no public name; it checks the
    # config against the instance's schema without opening any storage.
    from dagster._core.instance.config import dagster_instance_config

    try:
        dagster_instance_config(home)
    except DagsterInvalidConfigError as exc:
        first = exc.errors[0].message if exc.errors else str(exc)
        return " ".join(first.split())

    return None


def _postgres_url_setting(config: object) -> object:
    """``storage.postgres.postgres_url`` of a dagster.yaml, or None."""
    for key in ("storage", "postgres", "postgres_url"):
        if not isinstance(config, dict):
            return None
        config = config.get(key)

    return config


def _dagster_storage() -> Finding:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = os.environ.get(STORAGE_URL_ENV)
    if not url:
        return Finding(
            STORAGE_URL_ENV, False,
            f"not set: dagster.yaml reads Dagster's storage from it; set it to "
            f"{STORAGE_DRIVER}://user:password@host:5432/database",
        )
    unreadable = Finding(
        STORAGE_URL_ENV, False,
        f"not a readable URL; use {STORAGE_DRIVER}://user:password@host:5432/database, "
        "with @, / and : in the password percent-encoded",
    )
    try:
        parsed = sqlalchemy.make_url(url)
        port = parsed.port  # parsed on demand: a password typed as the port fails here
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return unreadable
    if "@" in (parsed.host or "") or (port is not None and not 0 < port < 65536):
        return unreadable
    # The query may carry a password (?password=…, ?dsn=…): never shown.
    shown = parsed.set(query={}).render_as_string(hide_password=True)
    shown += "?…" if parsed.query else ""
    if parsed.drivername != STORAGE_DRIVER:
        return Finding(
            STORAGE_URL_ENV, False,
            f"{shown} must start with {STORAGE_DRIVER}:// (the driver this project ships)",
        )

    # The URL's own connect_timeout, if it has one, is tried as Dagster will.
    timeout = {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if "connect_timeout" in parsed.query:
        timeout = {}
    engine = sqlalchemy.create_engine(parsed, poolclass=NullPool, connect_args=timeout)
    try:
        with engine.connect() as connection:
            # Dagster makes its tables on first start, in the default schema.
            can_hold_dagster = connection.execute(
                sqlalchemy.text(
                    "SELECT to_regclass('runs') IS NOT NULL "
                    "OR has_schema_privilege(current_schema(), 'CREATE')"
                )
            ).scalar()
    except ValueError:
        return unreadable
    except sqlalchemy.exc.DBAPIError as exc:
        reason = _masked(" ".join(str(exc.orig).split()), parsed)
        return Finding(STORAGE_URL_ENV, False, f"cannot connect to {shown}: {reason}")
    finally:
        engine.dispose()
    if not can_hold_dagster:
        return Finding(
            STORAGE_URL_ENV, False,
            f"{shown}: the user may not create Dagster's tables in the default schema; "
            "grant it CREATE there, or have the database's owner start Dagster once",
        )

    return Finding(STORAGE_URL_ENV, True, shown)


def _masked(text: str, url: "sqlalchemy.engine.URL") -> str:
    """``text`` without the URL's password or any value of its query."""
    values = [url.password or ""]
    for value in url.query.values():
        values += [value] if isinstance(value, str) else list(value)
    for value in sorted(values, key=len, reverse=True):
        if value:
            text = text.replace(value, "***")

    return text


def _api_address() -> Finding:
    url = os.environ.get(API_BASE_URL_ENV)
    if not url:
        return Finding(API_BASE_URL_ENV, True, f"not set: {DEFAULT_BASE_URL}")
    try:
        check_base_url(url)
    except ValueError as exc:
        return Finding(API_BASE_URL_ENV, False, str(exc))

    return Finding(API_BASE_URL_ENV, True, url)


def _warehouse() -> Finding:
    url = os.environ.get(DATABASE_URL_ENV)
    if not url:
        return Finding(
            DATABASE_URL_ENV, False,
            "not set: set it to the warehouse's PostgreSQL URL, "
            "postgresql://user:password@host:5432/database",
        )
    try:
        with connect(url) as connection:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT current_setting('server_encoding'), "
                    "to_regclass(%(table)s) IS NOT NULL "
                    "OR has_database_privilege(current_database(), 'CREATE') "
                    "OR (to_regnamespace(%(schema)s) IS NOT NULL "
                    "    AND has_schema_privilege(%(schema)s, 'CREATE'))",
                    {"table": f"{DEFAULT_SCHEMA}.{DEFAULT_TABLE}", "schema": DEFAULT_SCHEMA},
                )
                encoding, can_hold_table = cursor.fetchone()
            # A table that exists already: is it ours, and may the user write it?
            accounts_with_live_rows(connection, TableName(), [])
    except WarehouseError as exc:
        return Finding(DATABASE_URL_ENV, False, " ".join(str(exc).split()))
    shown = shown_dsn(url)
    if encoding != "UTF8":
        return Finding(
            DATABASE_URL_ENV, False,
            f"{shown}: the database is encoded {encoding}; the table needs UTF8 "
            "(CREATE DATABASE … ENCODING 'UTF8')",
        )
    if not can_hold_table:
        return Finding(
            DATABASE_URL_ENV, False,
            f"{shown}: the user may not create {DEFAULT_SCHEMA}.{DEFAULT_TABLE}; grant it "
            f"CREATE on the database, or create the schema {DEFAULT_SCHEMA} for it",
        )

    return Finding(DATABASE_URL_ENV, True, shown)


def _accounts() -> list[Finding]:
    try:
        accounts = load_accounts()
    except AccountsFileError as exc:
        return [Finding("BIS_ACCOUNTS_FILE", False, str(exc))]

    findings = [Finding("BIS_ACCOUNTS_FILE", True, f"{len(accounts)} account(s)")]
    for account in accounts.values():
        token = os.environ.get(account.token_env, "").strip()
        ready = bool(token) and token.isascii()
        if not token:
            detail = "not set or empty; set it to the store's API token"
        else:
            detail = "set" if ready else "holds characters outside ASCII; check what was pasted"
        findings.append(Finding(f"account {account.id!r}: {account.token_env}", ready, detail))

    return findings


def report(findings: list[Finding]) -> str:
    """The findings as lines of ``ok`` or ``FIX``, subject and detail."""
    width = max(len(finding.subject) for finding in findings)

    return "\n".join(
        f"{'ok' if finding.ready else 'FIX':3}  {finding.subject:{width}}  {finding.detail}"
        for finding in findings
    )
