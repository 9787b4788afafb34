"""The model catalog and prices (a data file, ``models.toml``, plus ``genai-prices``)."""

from __future__ import annotations

from polyroute.catalog._catalog import (
    APIS,
    FREE,
    Api,
    Catalog,
    CatalogModel,
    Cost,
    ModelOverride,
    Price,
    PriceSource,
)

__all__ = [
    "APIS",
    "FREE",
    "Api",
    "Catalog",
    "CatalogModel",
    "Cost",
    "ModelOverride",
    "Price",
    "PriceSource",
]
