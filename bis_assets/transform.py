"""Shape the API's variant rows into the exact frame of the notifications table.

Pure pandas, no Dagster: the rows of one account go in, a frame with the
table's columns, dtypes, cuts, sync keys and metadata columns comes out, along
with the counts a person wants to see (skipped, duplicates, collisions).
"""

import hashlib
import itertools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
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
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_REPLACEMENT = "\ufffd"
# ASCII digits only: \d would take "١٢٣" or "１２３" for 123.
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_WHOLE = re.compile(r"[+-]?[0-9]+")
# PostgreSQL's numeric holds up to 131072 digits before the point, 16383 after.
_NUMERIC_DIGITS_BEFORE, _NUMERIC_DIGITS_AFTER = 131_072, 16_383

_ROWS_PER_BATCH = 10_000
_PLAIN_TEXT = frozenset({str, type(None)})  # values a fast path can take as they are
_PLAIN_INTEGERS = frozenset({int, type(None)})

try:
    # CPython's own MD5 hashes a short text in half the time OpenSSL's takes.
    from _md5 import md5 as _md5
except ImportError:  # a Python built without it
    _md5 = hashlib.md5


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
    if not identified.all():
        frame = frame.loc[identified].reset_index(drop=True)

    frame["__source_id"] = pd.Series([source_id] * len(frame), dtype=object)
    frame["_account_id"] = pd.Series([account_id] * len(frame), dtype=object)
    frame[SYNC_KEY_COLUMN] = sync_keys(frame)
    frame["__synced_at"] = pd.Series(
        pd.Timestamp(synced_at).tz_convert("UTC"), index=frame.index
    ).astype("datetime64[us, UTC]")

    colliding: dict[str, int] = {}
    deduplicated = frame
    # Hashing a million keys costs; the two passes below only when a key repeats.
    if frame[SYNC_KEY_COLUMN].duplicated().any():
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


def sync_keys(frame: pd.DataFrame) -> pd.Series:
    """MD5 of sku + product_id + variant_no as SQL's concat() joins them."""
    skus = frame["sku"].tolist()
    products, variants = frame["product_id"], frame["variant_no"]
    if not (_is_whole(products) and _is_whole(variants) and _types(skus) <= _PLAIN_TEXT):
        return _sync_keys_of_any_values(frame)

    # No vectorized MD5 exists in pandas or NumPy; this is the one row loop.
    keys = [
        _md5(f"{sku or ''}{product}{variant}".encode()).hexdigest()
        for sku, product, variant in zip(skus, products.tolist(), variants.tolist(), strict=True)
    ]

    return pd.Series(keys, index=frame.index, dtype=object)


def _is_whole(values: pd.Series) -> bool:
    """Integers without a gap, which an f-string writes as concat() does."""
    return pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any()


def _sync_keys_of_any_values(frame: pd.DataFrame) -> pd.Series:
    joined = (
        frame["sku"].fillna("").astype(object)
        + frame["product_id"].astype(str)
        + frame["variant_no"].astype(str)
    )
    keys = [_md5(text.encode("utf-8")).hexdigest() for text in joined]

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
    """Column lists from row dicts, keeping Python ints exact (no float detour).

    A batch of rows at a time, column by column, with ``dict.get`` mapped
    over the batch in C: a quarter of the cost of appending value by value,
    and a generator is still read once. Other mappings go through ``get``.
    """
    values: dict[str, list[Any]] = {column.name: [] for column in SOURCE_COLUMNS}
    remaining = iter(rows)
    while batch := list(itertools.islice(remaining, _ROWS_PER_BATCH)):
        get = dict.get if _types(batch) == {dict} else _get
        for column in SOURCE_COLUMNS:
            values[column.name].extend(map(get, batch, itertools.repeat(column.source)))

    return values


def _get(row: Mapping[str, Any], key: str) -> Any:
    return row.get(key)


def _types(values: list[Any]) -> set[type]:
    return set(map(type, values))


# Each shaper takes a column's values as read and returns the shaped Series
# with the number of values that could not be stored exactly. The fast paths
# take plain values (text or int, and None) whole; anything else goes the
# slow way, value by value.
Shaped = tuple[pd.Series, int]


def _shape(column: Column, values: list[Any], invalid: dict[str, int]) -> pd.Series:
    shape = {"text": _text, "int": _integers, "time": _times, "decimal": _decimals}[column.kind]
    shaped, invalid[column.name] = shape(values, column)

    return shaped


def _lost(raw: pd.Series, shaped: pd.Series) -> Shaped:
    """``shaped`` with how many values ``raw`` had that it turned into NULL.

    Only None was missing: pandas also takes NaN for missing, but a NaN
    from the API is a value that could not be stored.
    """
    present = np.fromiter((value is not None for value in raw.tolist()), bool, len(raw))

    return shaped, int((present & shaped.isna().to_numpy()).sum())


def _text(values: list[Any], column: Column) -> Shaped:
    """Text as stored: without U+0000 or lone surrogates, cut to ``max_chars``."""
    if _types(values) <= _PLAIN_TEXT and not _UNSTORABLE.search("".join(filter(None, values))):
        cut = column.max_chars
        if cut is not None:
            values = [value[:cut] if value else value for value in values]
        return pd.Series(values, dtype=object), 0

    raw = pd.Series(values, dtype=object)

    return _lost(raw, _cleaned_text(raw, column))


def _cleaned_text(raw: pd.Series, column: Column) -> pd.Series:
    present = raw.notna()
    text = raw.where(~present | raw.map(type).eq(str), raw.astype(str))
    text = text.where(present, None)

    text = text.str.replace(_NUL, "", regex=False)
    text = text.str.replace(_SURROGATE, _REPLACEMENT, regex=True)
    if column.max_chars is not None:
        text = text.str.slice(0, column.max_chars)

    return text.where(present, None).astype(object)


def _integers(values: list[Any], column: Column) -> Shaped:
    dtype = INTEGER_DTYPES[column.sql_type]
    if _types(values) <= _PLAIN_INTEGERS:
        try:
            return pd.Series(pd.array(values, dtype=dtype)), 0
        except (OverflowError, TypeError, ValueError):
            pass  # some value is out of range: sort them out one by one below

    # Python lists, not Series.map: a map would infer float64 and round big ids.
    bound = INTEGER_BOUNDS[column.sql_type]
    exact = [_whole_number(value) for value in values]
    in_range = [None if v is None or not -bound - 1 <= v <= bound else v for v in exact]

    return _lost(pd.Series(values, dtype=object), pd.Series(pd.array(in_range, dtype=dtype)))


def _whole_number(value: Any) -> int | None:
    """An id or count given as an int, a whole JSON number or ASCII digits."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value) if _WHOLE.fullmatch(value.strip()) else None
    if not isinstance(value, Decimal | float):
        return None
    number = Decimal(value) if isinstance(value, Decimal) else Decimal(repr(value))
    if not number.is_finite() or number != number.to_integral_value():
        return None

    return int(number)


def _times(values: list[Any], column: Column) -> Shaped:
    raw = pd.Series(values, dtype=object)
    if _types(values) <= _PLAIN_TEXT:
        shaped = _parsed_times(raw)
        # None is the only missing value, and it stays missing.
        return shaped, int(shaped.isna().sum()) - values.count(None)

    return _lost(raw, _parsed_times(raw.where(raw.map(type).eq(str), None)))


def _parsed_times(text: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")

    return parsed.astype("datetime64[us, UTC]")


def _decimals(values: list[Any], column: Column) -> Shaped:
    """Exact decimals from text; each distinct text is parsed once.

    An empty price is NULL by rule, so it does not count as invalid.
    """
    raw = pd.Series(values, dtype=object)
    if not _types(values) <= _PLAIN_TEXT:
        shaped, lost = _lost(raw, _decimals_of_any_values(raw))
        return shaped, lost - _blank_count(raw)

    codes, texts = pd.factorize(raw.to_numpy())
    parsed = [_decimal_or_none(text) for text in texts]
    rows_per_text = np.bincount(codes[codes >= 0], minlength=len(texts))
    invalid = sum(
        int(rows)
        for text, number, rows in zip(texts, parsed, rows_per_text, strict=True)
        if number is None and text.strip()
    )

    return pd.Series(np.array([*parsed, None], dtype=object)[codes], dtype=object), invalid


def _decimal_or_none(text: str) -> Decimal | None:
    """The exact value of a decimal text that numeric can hold, else None."""
    text = text.strip()
    if not _DECIMAL.fullmatch(text):
        return None
    number = Decimal(text)
    if number.adjusted() >= _NUMERIC_DIGITS_BEFORE:
        return None
    if -number.as_tuple().exponent > _NUMERIC_DIGITS_AFTER:
        return None

    return number


def _decimals_of_any_values(raw: pd.Series) -> pd.Series:
    parsed = [None if value is None else _decimal_or_none(str(value)) for value in raw]

    return pd.Series(parsed, index=raw.index, dtype=object)


def _blank_count(raw: pd.Series) -> int:
    """Prices that are only blanks."""
    return int(raw.map(lambda value: isinstance(value, str) and not value.strip()).sum())


def frame_preview(frame: pd.DataFrame, rows: int = 5) -> str:
    """A small markdown table of the first rows, for the Dagster UI."""
    shown = frame.head(rows).drop(columns=["__source_id", "__synced_at"])
    cells = shown.map(lambda value: "" if pd.isna(value) else str(value).replace("|", "\\|"))

    return cells.to_markdown(index=False, disable_numparse=True)
