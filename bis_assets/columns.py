"""The columns of ``back_in_stock.notifications``, written down once.

The DDL, the transform's column order and dtypes, the COPY format and the
asset checks all read this module, so a column is added or changed here only.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column of the table and how a value reaches it."""

    name: str
    sql_type: str
    kind: str  # "text", "int", "decimal", "time": how the transform shapes it
    source: str | None = None  # field of the API row, None for our own columns
    max_chars: int | None = None  # cut to this many characters (not bytes)
    nullable: bool = True


SOURCE_COLUMNS = (
    Column("sku", "varchar(64)", "text", "sku", max_chars=64),
    Column("product_id", "bigint", "int", "product_id"),
    Column("variant_no", "bigint", "int", "variant_no"),
    Column("description", "varchar(255)", "text", "description", max_chars=255),
    Column("unsent_notifications_count", "integer", "int", "unsent_notifications_count"),
    Column("sent_notifications_count", "integer", "int", "sent_notifications_count"),
    Column("notifications_count", "integer", "int", "notifications_count"),
    Column(
        "notification_last_added_at", "timestamptz", "time", "notification_last_added_at"
    ),
    Column("unit_price", "numeric", "decimal", "unit_price"),
)

META_COLUMNS = (
    Column("__source_id", "text", "text"),
    Column("_account_id", "text", "text", nullable=False),
    Column("__sync_key", "char(32)", "text", nullable=False),
    Column("__synced_at", "timestamptz", "time", nullable=False),
)

# Set by the load, never by the transform: when a complete sync stopped
# returning the row, cleared when it comes back.
DELETED_AT = Column("__deleted_at", "timestamptz", "time")

# What the transform produces and the IO manager stages, in this order.
FRAME_COLUMNS = SOURCE_COLUMNS + META_COLUMNS
TABLE_COLUMNS = FRAME_COLUMNS + (DELETED_AT,)

ACCOUNT_COLUMN = "_account_id"
SYNC_KEY_COLUMN = "__sync_key"
SYNCED_AT_COLUMN = "__synced_at"
KEY_COLUMNS = (ACCOUNT_COLUMN, SYNC_KEY_COLUMN)

# The identity the sync key is built from, in the order it is concatenated.
KEY_SOURCE_COLUMNS = ("sku", "product_id", "variant_no")


def column_names(columns: tuple[Column, ...] = FRAME_COLUMNS) -> list[str]:
    """The names of ``columns``, in table order."""
    return [column.name for column in columns]
