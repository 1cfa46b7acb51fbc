"""A local stand-in for the Back In Stock Reports API, for tests and demos."""

from bis_assets.api_server.catalog import (
    iter_synthetic_rows,
    storefront_names,
    storefront_rows,
    synthetic_rows,
)
from bis_assets.api_server.server import (
    BackInStockServer,
    Fault,
    RequestRecord,
    SilentServer,
)

__all__ = [
    "BackInStockServer",
    "Fault",
    "RequestRecord",
    "SilentServer",
    "iter_synthetic_rows",
    "storefront_names",
    "storefront_rows",
    "synthetic_rows",
]
