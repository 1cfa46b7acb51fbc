"""The errors a sync can raise, each naming the account and what to do.

No message here ever holds a token: the client sends it in a header only,
and URLs are shown with any user information removed.
"""


class SyncError(Exception):
    """Base of every error raised by bis-assets; names the account it concerns."""

    retryable = False  # whether the same sync could succeed a little later

    def __init__(self, account_id: str | None, message: str) -> None:
        self.account_id = account_id
        super().__init__(f"account {account_id!r}: {message}" if account_id else message)


class ApiError(SyncError):
    """The Back In Stock API answered something we cannot use."""


class AuthenticationError(ApiError):
    """The API refused the token (401) or the store's plan (403); never retried."""


class RetryableApiError(ApiError):
    """A transient failure that outlasted our retries; a later run may succeed."""

    retryable = True


class PaginationError(ApiError):
    """Paging did not end within the configured page cap."""


class ConfigurationError(SyncError):
    """The account's configuration is missing or invalid."""


class WarehouseError(SyncError):
    """The destination table cannot take the sync as it stands."""
