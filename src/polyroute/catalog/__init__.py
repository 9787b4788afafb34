"""The model catalog and prices (a data file, ``models.toml``, plus ``genai-prices``)."""

from __future__ import annotations

from polyroute.catalog._catalog import (
    FREE,
    Catalog,
    CatalogModel,
    Cost,
    ModelOverride,
    Price,
    PriceSource,
)

__all__ = ["FREE", "Catalog", "CatalogModel", "Cost", "ModelOverride", "Price", "PriceSource"]
