"""The accounts to sync, read from one YAML file that a person edits.

Each account's id becomes a Dagster partition key and a value in SQL, so it
is held to a safe pattern. Tokens never live in the file: it names the
environment variable that holds each one.
"""

import os
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bis_assets.client import check_base_url

ACCOUNTS_FILE_ENV = "BIS_ACCOUNTS_FILE"
DEMO_ACCOUNTS_FILE = Path(__file__).with_name("accounts.yaml")
ACCOUNT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
# The name must say TOKEN: that keeps out variables such as PATH, whose value
# would go to the API as a token, and tokens pasted where the name belongs.
TOKEN_ENV_PATTERN = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
TOKEN_ENV_MARK = "TOKEN"


class Account(BaseModel):
    """One Back In Stock store to sync."""

    # A numeric id or source_id (a shop's number) is read as its digits.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    id: str = Field(description="Partition key: lower-case letters, digits, _ and -")
    source_id: str = Field(min_length=1, description="Written to __source_id")
    token_env: str = Field(description="Environment variable holding the API token")
    base_url: str | None = Field(default=None, description="Overrides the API's address")

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not ACCOUNT_ID_PATTERN.fullmatch(value):
            # Not echoed: it may be a token pasted in the wrong field.
            raise ValueError(
                f"an account id must match {ACCOUNT_ID_PATTERN.pattern} "
                "(it is a partition key and a SQL value)"
            )
        return value

    @field_validator("token_env")
    @classmethod
    def _env_name(cls, value: str) -> str:
        if not TOKEN_ENV_PATTERN.fullmatch(value) or TOKEN_ENV_MARK not in value:
            # Not echoed: a token pasted here by mistake must not reach a log.
            raise ValueError(
                "token_env must name an environment variable of upper-case letters, "
                f"digits and _ that says {TOKEN_ENV_MARK} (e.g. BIS_TOKEN_MYSTORE), "
                "not hold the token itself"
            )
        return value

    @field_validator("source_id")
    @classmethod
    def _printable(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("source_id must not be blank")
        if not value.isprintable():
            raise ValueError("source_id must not hold control or invisible characters")
        return value

    @field_validator("base_url")
    @classmethod
    def _plain_url(cls, value: str | None) -> str | None:
        if value is not None:
            check_base_url(value)
        return value


class AccountsFileError(ValueError):
    """The accounts file cannot be read or is invalid."""


def accounts_file() -> Path:
    """The accounts file in use: ``$BIS_ACCOUNTS_FILE``."""
    path = os.environ.get(ACCOUNTS_FILE_ENV)
    if not path:
        # Never the demo's stores by default: their partitions would appear
        # beside the real ones in an instance where a variable was forgotten.
        raise AccountsFileError(
            f"{ACCOUNTS_FILE_ENV} is not set; point it at your accounts file "
            "(bis-assets demo and ui use the demo's)"
        )

    return Path(path)


def load_accounts(path: Path | None = None) -> dict[str, Account]:
    """The accounts of the file by id, in file order; raises ``AccountsFileError``."""
    path = path or accounts_file()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise AccountsFileError(f"cannot read accounts file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        # Only where and what: the parser's own message quotes the lines
        # around the error, and a token pasted there would reach the logs.
        where = getattr(exc, "problem_mark", None)
        position = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise AccountsFileError(f"accounts file {path} is not valid YAML{position}") from None
    except UnicodeDecodeError as exc:
        raise AccountsFileError(
            f"accounts file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        ) from None

    entries = document.get("accounts", False) if isinstance(document, dict) else False
    if entries is None:
        entries = []  # "accounts:" with nothing under it
    if not isinstance(entries, list):
        raise AccountsFileError(f"{path}: expected a top-level 'accounts:' list")
    if not entries:
        # An emptied or truncated file would otherwise remove every partition.
        raise AccountsFileError(
            f"{path}: the 'accounts:' list is empty; list at least one account "
            "(to stop syncing altogether, stop the schedule and sensors instead)"
        )

    accounts: dict[str, Account] = {}
    for position, entry in enumerate(entries, start=1):
        try:
            account = Account.model_validate(entry)
        except ValidationError as exc:
            details = "; ".join(
                f"{_field_name(error['loc'])}: {error['msg']}" for error in exc.errors()
            )
            raise AccountsFileError(
                f"{path}: account #{position}{_named(entry)}: {details}"
            ) from None
        if account.id in accounts:
            raise AccountsFileError(f"{path}: account id {account.id!r} appears twice")
        accounts[account.id] = account

    return accounts


def _field_name(location: tuple) -> str:
    """The field an error is about; an unknown key is named only if it looks like one."""
    name = ".".join(map(str, location)) or "entry"

    return name if _FIELD_NAME.fullmatch(name) else "a field that is not a known name"


_FIELD_NAME = re.compile(r"[a-z_]{1,32}")


def _named(entry: object) -> str:
    """`` (id 'x')`` for an entry whose id can be shown, else nothing."""
    account_id = entry.get("id") if isinstance(entry, dict) else None
    if isinstance(account_id, str) and ACCOUNT_ID_PATTERN.fullmatch(account_id):
        return f" (id {account_id!r})"

    return ""
