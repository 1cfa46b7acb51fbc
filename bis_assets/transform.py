"""Shape the API's variant rows into the exact frame of the notifications table.

Pure pandas, no Dagster: the rows of one account go in, a frame with the
table's columns, dtypes, cuts, sync keys and metadata columns comes out, along
with the counts a person wants to see (skipped, duplicates, collisions).
"""

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pandas as pd

from bis_assets.columns import (
    FRAME_COLUMNS,
    KEY_SOURCE_COLUMNS,
    SOURCE_COLUMNS,
    SYNC_KEY_COLUMN,
    Column,
)

INTEGER_DTYPES = {"bigint": "Int64", "integer": "Int32"}
INTEGER_BOUNDS = {"bigint": 2**63 - 1, "integer": 2**31 - 1}

# PostgreSQL text cannot hold U+0000 and UTF-8 cannot hold a lone surrogate.
_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
_DECIMAL = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


@dataclass
class ShapedRows:
    """The frame for one account and what shaping it found."""

    frame: pd.DataFrame
    rows_fetched: int
    rows_skipped: int = 0
    duplicates_dropped: int = 0
    colliding_keys: dict[str, int] = field(default_factory=dict)
    invalid_values: dict[str, int] = field(default_factory=dict)


def shape_rows(
    rows: Iterable[Mapping[str, Any]],
    account_id: str,
    source_id: str,
    synced_at: datetime,
) -> ShapedRows:
    """Shape one account's rows, in the order read, into the table's frame.

    Rows without product_id or variant_no cannot be identified and are
    skipped; when a key arrives twice the row read last wins; a value that
    cannot be stored exactly (a malformed price or time, a count out of range)
    becomes NULL and is counted in ``invalid_values``.
    """
    values = _columns_of(rows)
    rows_fetched = len(values[SOURCE_COLUMNS[0].name])
    invalid: dict[str, int] = {}

    frame = pd.DataFrame(
        {column.name: _shape(column, values.pop(column.name), invalid) for column in SOURCE_COLUMNS}
    )

    identified = frame["product_id"].notna() & frame["variant_no"].notna()
    frame = frame.loc[identified].reset_index(drop=True)

    frame["__source_id"] = pd.Series([source_id] * len(frame), dtype=object)
    frame["_account_id"] = pd.Series([account_id] * len(frame), dtype=object)
    frame[SYNC_KEY_COLUMN] = sync_keys(frame)
    frame["__synced_at"] = pd.Series(
        pd.Timestamp(synced_at).tz_convert("UTC"), index=frame.index
    ).astype("datetime64[us, UTC]")

    colliding = colliding_keys(frame)
    deduplicated = frame.drop_duplicates(SYNC_KEY_COLUMN, keep="last")
    deduplicated = deduplicated.reset_index(drop=True)[[c.name for c in FRAME_COLUMNS]]

    return ShapedRows(
        frame=deduplicated,
        rows_fetched=rows_fetched,
        rows_skipped=rows_fetched - len(frame),
        duplicates_dropped=len(frame) - len(deduplicated),
        colliding_keys=colliding,
        invalid_values={name: count for name, count in invalid.items() if count},
    )


def empty_frame() -> pd.DataFrame:
    """A frame with the table's columns and dtypes and no rows."""
    return shape_rows([], "", "", datetime.now().astimezone()).frame


def sync_keys(frame: pd.DataFrame) -> pd.Series:
    """MD5 of sku + product_id + variant_no as SQL's concat() joins them."""
    joined = (
        frame["sku"].fillna("").astype(object)
        + frame["product_id"].astype(str)
        + frame["variant_no"].astype(str)
    )
    # No vectorized MD5 exists in pandas or NumPy; this is the one row loop.
    keys = [hashlib.md5(text.encode("utf-8")).hexdigest() for text in joined]

    return pd.Series(keys, index=frame.index, dtype=object)


def colliding_keys(frame: pd.DataFrame) -> dict[str, int]:
    """Keys shared by distinct (sku, product_id, variant_no), with how many share each.

    The key joins its parts without a separator, so "ab" + 1 and "a" + "b1"
    meet; the table can keep only one row of such a key.
    """
    repeated = frame[frame.duplicated(SYNC_KEY_COLUMN, keep=False)]
    identities = repeated.drop_duplicates([SYNC_KEY_COLUMN, *KEY_SOURCE_COLUMNS])
    counts = identities[SYNC_KEY_COLUMN].value_counts()

    return {key: int(count) for key, count in counts[counts > 1].items()}


def _columns_of(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Column lists from row dicts, keeping Python ints exact (no float detour)."""
    values: dict[str, list[Any]] = {column.name: [] for column in SOURCE_COLUMNS}
    for row in rows:
        for column in SOURCE_COLUMNS:
            values[column.name].append(row.get(column.source))

    return values


def _shape(column: Column, values: list[Any], invalid: dict[str, int]) -> pd.Series:
    raw = pd.Series(values, dtype=object)
    shape = {"text": _text, "int": _integers, "time": _times, "decimal": _decimals}[column.kind]
    shaped = shape(raw, column)
    invalid[column.name] = int((raw.notna() & shaped.isna()).sum()) - _blank_count(raw, column)

    return shaped


def _blank_count(raw: pd.Series, column: Column) -> int:
    """Empty prices are NULL by rule, not invalid."""
    if column.kind != "decimal":
        return 0

    return int(raw.map(lambda value: isinstance(value, str) and not value.strip()).sum())


def _text(raw: pd.Series, column: Column) -> pd.Series:
    present = raw.notna()
    text = raw.where(~present | raw.map(type).eq(str), raw.astype(str))
    text = text.where(present, None)

    text = text.str.replace(_NUL, "", regex=False)
    text = text.str.replace(_SURROGATE, _REPLACEMENT, regex=True)
    if column.max_chars is not None:
        text = text.str.slice(0, column.max_chars)

    return text.where(present, None).astype(object)


def _integers(raw: pd.Series, column: Column) -> pd.Series:
    dtype = INTEGER_DTYPES[column.sql_type]
    values = raw.tolist()
    if all(type(value) is int or value is None for value in values):
        try:
            return pd.Series(pd.array(values, dtype=dtype), index=raw.index)
        except (OverflowError, TypeError, ValueError):
            pass  # some value is out of range: sort them out one by one below

    # Python lists, not Series.map: a map would infer float64 and round big ids.
    bound = INTEGER_BOUNDS[column.sql_type]
    exact = [_whole_number(value) for value in values]
    in_range = [None if v is None or not -bound - 1 <= v <= bound else v for v in exact]

    return pd.Series(pd.array(in_range, dtype=dtype), index=raw.index)


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip())
    except ArithmeticError:
        return None
    if not number.is_finite() or number != number.to_integral_value():
        return None

    return int(number)


def _times(raw: pd.Series, column: Column) -> pd.Series:
    as_text = raw.where(raw.map(type).eq(str), None)
    parsed = pd.to_datetime(as_text, utc=True, format="ISO8601", errors="coerce")

    return parsed.astype("datetime64[us, UTC]")


def _decimals(raw: pd.Series, column: Column) -> pd.Series:
    text = raw.where(raw.isna(), raw.astype(str)).str.strip()
    valid = text.str.fullmatch(_DECIMAL).fillna(False).astype(bool)

    return text.where(valid, None).map(Decimal, na_action="ignore").astype(object)


def frame_preview(frame: pd.DataFrame, rows: int = 5) -> str:
    """A small markdown table of the first rows, for the Dagster UI."""
    shown = frame.head(rows).drop(columns=["__source_id", "__synced_at"])
    cells = shown.map(lambda value: "" if pd.isna(value) else str(value).replace("|", "\\|"))

    return cells.to_markdown(index=False, disable_numparse=True)
