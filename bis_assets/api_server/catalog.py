"""Variant report rows built from real storefront catalogs or synthesised."""

import json
import math
import random
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

CATALOG_DIR = Path(__file__).parent / "catalogs"
CATALOG_SUFFIX = ".products.json"

# A bound Random.random: a uniform float in [0, 1).
Chance = Callable[[], float]

# Times fall in a fixed window so rows never depend on "now". The text of
# each part is built once: a million rows need two million timestamps.
_FIRST_DAY = date(2015, 1, 1)
_DAY_COUNT = (date(2025, 12, 31) - _FIRST_DAY).days + 1
_DAY_TEXT = [(_FIRST_DAY + timedelta(days=n)).isoformat() for n in range(_DAY_COUNT)]
_HOUR_MINUTE_TEXT = [f"T{h:02d}:{m:02d}:" for h in range(24) for m in range(60)]
_SECOND_TEXT = [f"{s:02d}." for s in range(60)]
_MILLI_TEXT = [f"{ms:03d}Z" for ms in range(1000)]

_BRANDS = ["Stanley", "Rigz", "Kestrel", "Nordlys", "Café Alpin", "Zürich Outdoor"]
_ADJECTIVES = [
    "Classic", "IceFlow™", "Men’s", "Women’s", "Heavy-Duty", "Crème", "Légère",
    "Ultra-Light", "Pro", "🔥 Hot Deal", "Vintage", "Adventure",
]
_NOUNS = [
    "Tumbler", "Camera Cage", "Garden Bar", "Hoodie", "Tripod", "Quencher",
    "Tent", "Sleeping Bag", "Pergola", "Rig Plate", "Thermos", "Backpack",
]
_DETAILS = [
    "| 20 OZ", "12 × 16", "£ Edition", "2.0", "— Limited", "🏕️ Camp Set", "",
    "40 oz", "4 x 6", "Série Noire",
]
_COLOURS = [
    "Black", "Rosé", "Crème", "Twilight", "Noir 🖤", "Forest Green", "Azure",
    "Cream’s Blend", "Hammertone Green",
]
_SIZES = ["XS", "S", "M", "L", "XL", "20 oz", "40 oz", "12 × 16", "4 x 6", "One Size"]
_LONG_TAIL = " with extra-long marketing copy: durable, réutilisable, dishwasher safe ™"

# Every title combination built once: picking by index is far cheaper per row.
_PRODUCT_TITLES = [
    " ".join(part for part in (brand, adjective, noun, detail) if part)
    for brand in _BRANDS
    for adjective in _ADJECTIVES
    for noun in _NOUNS
    for detail in _DETAILS
]
_VARIANT_TITLES = [f"{colour} / {size}" for colour in _COLOURS for size in _SIZES]
_OPTION_SUFFIX = [f"-{n:02d}" for n in range(100)]


def _skewed_price_texts(count: int = 2000) -> list[str]:
    """Prices with a long tail (mostly cheap, a few thousands), many round."""
    rng = random.Random("prices")
    prices = []
    for _ in range(count):
        cents = int(900 / (1.0 - rng.random()) ** 0.8)
        if rng.random() < 0.6:
            cents = cents // 100 * 100
        prices.append(f"{cents // 100}.{cents % 100:02d}")
    return prices


_PRICE_TEXTS = _skewed_price_texts()


def storefront_names() -> list[str]:
    """Names of the bundled storefront catalogs, e.g. ``"stanley1913"``."""
    paths = CATALOG_DIR.glob(f"*{CATALOG_SUFFIX}")
    return sorted(path.name.removesuffix(CATALOG_SUFFIX) for path in paths)


def storefront_rows(name: str, seed: int = 0) -> list[dict]:
    """One report row per variant of the named storefront catalog."""
    if name not in storefront_names():
        raise KeyError(f"unknown storefront {name!r}; known: {storefront_names()}")

    path = CATALOG_DIR / f"{name}{CATALOG_SUFFIX}"
    products = json.loads(path.read_text(encoding="utf-8"))["products"]

    rows = []
    for product in products:
        for variant in product["variants"]:
            # Seeding per variant keeps a row stable when the catalog changes.
            chance = random.Random(f"{seed}:{variant['id']}").random
            rows.append(_report_row(
                variant.get("sku"),
                product["id"],
                variant["id"],
                _description(product["title"], variant.get("title")),
                variant.get("price"),
                chance,
            ))
    return rows


def synthetic_rows(count: int, seed: int = 0) -> list[dict]:
    """A messy synthetic catalog of ``count`` rows, deterministic from ``seed``."""
    return list(iter_synthetic_rows(count, seed))


def iter_synthetic_rows(count: int, seed: int = 0) -> Iterator[dict]:
    """Yield the rows of :func:`synthetic_rows` one by one, in constant memory."""
    chance = random.Random(f"synthetic:{seed}").random
    row_no = 0
    product_no = 0
    previous_sku: str | None = None

    while row_no < count:
        product_no += 1
        is_old_product = chance() < 0.3
        product_id = _unique_id(chance, product_no, is_old_product, variant=False)
        product_title = _pick(chance, _PRODUCT_TITLES)
        if chance() < 0.01:
            product_title += _LONG_TAIL * 4
        sku_stem = f"{product_title[:3].upper()}-{product_no:06d}"
        has_options = chance() < 0.7
        variant_count = 1 + int(-2.5 * math.log(1.0 - chance())) if has_options else 1

        for option_no in range(min(variant_count, count - row_no, 100)):
            row_no += 1
            sku = _synthetic_sku(chance, sku_stem, option_no, previous_sku)
            previous_sku = sku or previous_sku
            if has_options:
                description = f"{product_title} {_pick(chance, _VARIANT_TITLES)}"
            else:
                description = product_title
            yield _report_row(
                sku,
                product_id,
                _unique_id(chance, row_no, is_old_product, variant=True),
                description,
                _pick(chance, _PRICE_TEXTS),
                chance,
            )


def _report_row(
    sku: str | None,
    product_id: int,
    variant_no: int,
    description: str,
    unit_price: str | None,
    chance: Chance,
) -> dict:
    """Assemble one row in the API's field order, with notification figures.

    Most variants have a handful of requests, about 3% are very popular and
    a fifth have none at all, hence no times either.
    """
    unsent = sent = 0
    last_added_at = last_sent_at = None
    roll = chance()

    if roll >= 0.2:
        popularity = 40 if roll > 0.976 else 1
        unsent = int(-25 * math.log(1.0 - chance())) * popularity
        if chance() < 0.6:
            sent = int(-15 * math.log(1.0 - chance())) * popularity
            last_sent_at = _timestamp(chance) if sent else None
        if unsent + sent == 0:
            unsent = 1  # the variant has had a request: count it
        last_added_at = _timestamp(chance)

    return {
        "sku": sku,
        "product_id": product_id,
        "variant_no": variant_no,
        "description": description,
        "unsent_notifications_count": unsent,
        "sent_notifications_count": sent,
        "notifications_count": unsent + sent,
        "notification_last_added_at": last_added_at,
        "notification_last_sent_at": last_sent_at,
        "unit_price": unit_price,
    }


def _description(product_title: str, variant_title: str | None) -> str:
    """Product title plus variant title, as the report shows it."""
    if not variant_title or variant_title == "Default Title":
        return product_title
    return f"{product_title} {variant_title}"


def _timestamp(chance: Chance) -> str:
    """An ISO 8601 UTC time with milliseconds, e.g. 2015-03-23T13:34:41.084Z."""
    return (
        _DAY_TEXT[int(chance() * _DAY_COUNT)]
        + _HOUR_MINUTE_TEXT[int(chance() * 1440)]
        + _SECOND_TEXT[int(chance() * 60)]
        + _MILLI_TEXT[int(chance() * 1000)]
    )


def _pick(chance: Chance, options: list[str]) -> str:
    """A uniform pick, cheaper than Random.choice on the hot path."""
    return options[int(chance() * len(options))]


def _unique_id(chance: Chance, serial: int, short: bool, variant: bool) -> int:
    """A 13- or 14-digit id, unique per serial: a spaced serial plus noise."""
    if short:
        base = 5_000_000_000_000 if variant else 4_000_000_000_000
    else:
        base = 39_000_000_000_000 if variant else 14_000_000_000_000
    return base + serial * 1000 + int(chance() * 1000)


def _synthetic_sku(
    chance: Chance, sku_stem: str, option_no: int, previous_sku: str | None
) -> str | None:
    """A SKU, sometimes missing (None) or a copy of the previous one."""
    roll = chance()
    if roll < 0.03:
        return None
    if roll < 0.05 and previous_sku is not None:
        return previous_sku
    return sku_stem + _OPTION_SUFFIX[option_no]
