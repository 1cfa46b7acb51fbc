"""The concurrency pool of every sync, made before the first runs race to make it.

Steps in ``back_in_stock_api`` run at most the instance's default pool limit
at once, across runs. dagster-postgres makes a pool's row the first time a
step asks for it, with an insert that fails the run that loses a race to
make it (dagster-io/dagster#33552); a first sync of many accounts at once
starts exactly that race. Whatever starts many runs makes the row first.
"""

from dagster import DagsterInstance
from sqlalchemy.exc import SQLAlchemyError

API_POOL = "back_in_stock_api"


def ensure_api_pool(instance: DagsterInstance) -> None:
    """Make the pool's row at the default limit, unless it exists or no default is set."""
    if instance.global_op_concurrency_default_limit is None or _has_api_pool(instance):
        return

    try:
        instance.event_log_storage.initialize_concurrency_limit_to_default(API_POOL)
    except SQLAlchemyError:
        # Another process made it between our look and our insert.
        if not _has_api_pool(instance):
            raise


def _has_api_pool(instance: DagsterInstance) -> bool:
    return any(pool.name == API_POOL for pool in instance.event_log_storage.get_pool_limits())
