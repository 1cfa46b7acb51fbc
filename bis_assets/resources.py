"""Dagster resources: the Back In Stock API and the accounts file."""

import dataclasses
import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import psycopg2
from dagster import ConfigurableResource
from pydantic import Field

from bis_assets.accounts import Account, accounts_file, load_accounts
from bis_assets.client import BackInStockClient, ClientSettings
from bis_assets.embedded import DATABASE_URL_ENV
from bis_assets.errors import ConfigurationError
from bis_assets.warehouse import (
    DEFAULT_SCHEMA,
    DEFAULT_TABLE,
    TableName,
    accounts_with_live_rows,
    connect,
)

_DEFAULTS = ClientSettings()


class BackInStockResource(ConfigurableResource):
    """The Back In Stock Reports API; tokens come from each account's variable."""

    base_url: str = Field(default=_DEFAULTS.base_url, description="The API's address")
    per_page: int = Field(default=_DEFAULTS.per_page, description="Rows asked for a page")
    connect_timeout: float = Field(
        default=_DEFAULTS.connect_timeout, description="Seconds to connect"
    )
    read_timeout: float = Field(
        default=_DEFAULTS.read_timeout, description="Seconds to wait for a reply"
    )
    max_retries: int = Field(
        default=_DEFAULTS.max_retries, description="Retries of a failed request"
    )
    backoff_factor: float = Field(
        default=_DEFAULTS.backoff_factor, description="Exponential backoff base, seconds"
    )
    max_retry_after: float = Field(
        default=_DEFAULTS.max_retry_after,
        description="Longest Retry-After honoured; a longer one fails the sync",
    )
    max_pages: int = Field(
        default=_DEFAULTS.max_pages, description="Hard cap on pages per account"
    )
    max_in_flight: int = Field(
        default=_DEFAULTS.max_in_flight, description="Concurrent requests per account"
    )
    requests_per_second: float = Field(
        default=_DEFAULTS.requests_per_second, description="Request budget per account"
    )

    def client_for(self, account: Account, **overrides: float) -> BackInStockClient:
        """A client for ``account``, with its token read from the environment.

        ``overrides`` replace settings for this client only, e.g. the shorter
        timeouts of a sensor's probe.
        """
        # Surrounding whitespace (a newline from a secrets file) is no part of
        # a token; a variable of only whitespace is as good as unset.
        token = os.environ.get(account.token_env, "").strip()
        if token and not token.isascii():
            # Not echoed; requests could not send it in a header anyway.
            raise ConfigurationError(
                account.id,
                f"environment variable {account.token_env} holds characters outside "
                "ASCII; API tokens are plain ASCII, check what was pasted",
            )
        if not token:
            raise ConfigurationError(
                account.id,
                f"environment variable {account.token_env} is not set or empty; "
                "set it to the store's Back In Stock API token",
            )
        settings = {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(ClientSettings)
        }
        settings["base_url"] = account.base_url or self.base_url
        settings |= overrides
        try:
            client_settings = ClientSettings(**settings)
        except ValueError as exc:
            raise ConfigurationError(account.id, f"API settings: {exc}") from None

        return BackInStockClient(account.id, token, client_settings)


class AccountsResource(ConfigurableResource):
    """The accounts file; an empty path means ``$BIS_ACCOUNTS_FILE``."""

    path: str = Field(default="", description="Path of the accounts YAML file")

    def load(self) -> dict[str, Account]:
        return load_accounts(Path(self.path) if self.path else accounts_file())

    def select(self, account_ids: Sequence[str]) -> list[Account]:
        """The accounts of ``account_ids``, in that order, from one read of the file."""
        accounts = self.load()
        for account_id in account_ids:
            if account_id not in accounts:
                raise ConfigurationError(
                    account_id, f"not in the accounts file {self.path or accounts_file()}"
                )

        return [accounts[account_id] for account_id in account_ids]


class WarehouseResource(ConfigurableResource):
    """The PostgreSQL table; the server is ``$BIS_DATABASE_URL``."""

    schema_name: str = Field(default=DEFAULT_SCHEMA, description="Schema of the table")
    table_name: str = Field(default=DEFAULT_TABLE, description="Name of the table")

    @property
    def table(self) -> TableName:
        return TableName(self.schema_name, self.table_name)

    def connect(self) -> AbstractContextManager[psycopg2.extensions.connection]:
        """A UTC session on the warehouse, closed when the block ends."""
        database_url = os.environ.get(DATABASE_URL_ENV)
        if not database_url:
            # Never a database of our own here: a sync must not land somewhere
            # nobody will look because a variable was forgotten.
            raise ConfigurationError(
                None,
                f"{DATABASE_URL_ENV} is not set; set it to the warehouse's PostgreSQL URL "
                "(bis-assets demo and ui set it to their embedded server)",
            )

        return connect(database_url)

    def accounts_with_live_rows(self, account_ids: Sequence[str]) -> set[str]:
        """Those of the accounts with rows a sync could mark deleted."""
        with self.connect() as connection:
            return accounts_with_live_rows(connection, self.table, account_ids)
