"""How a failed sync reaches Dagster: retried only where a retry can mend it.

The sync job's retry policy retries a step that failed; errors that the
same sync would meet again (a refused token, a bad accounts file, a report
that would wipe most rows) are raised as ``Failure(allow_retries=False)``,
with our error as the cause. Transient ones (5xx or timeouts that outlasted
the client's own retries, a dropped warehouse connection) go on as raised.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from dagster import Backoff, Failure, Jitter, RetryPolicy

from bis_assets.errors import SyncError

# After the client's own retries: a minute, then about two, then the run fails.
SYNC_RETRY_POLICY = RetryPolicy(
    max_retries=2, delay=60, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


@contextmanager
def final_when_permanent() -> Iterator[None]:
    """Turn a ``SyncError`` that no retry can mend into a Failure that skips retries."""
    try:
        yield
    except SyncError as error:
        if error.retryable:
            raise
        raise Failure(description=str(error), allow_retries=False) from error
