"""An anti-corruption layer written in Python: the seed's legacy inventory mapping as a plugin.

The declarative `translate` plugin covers most translations; write a `Translator` when the mapping
needs real code (domain types, validation, lookups). This one exposes the legacy inventory service

    GET /inventory?sku=A-1  →  {"sku_code": "A-1", "qty_avail": "7", "loc_id": "WH-3"}

as the clean

    GET /api/stock/A-1      →  {"productId": "A-1", "availableQuantity": 7, "warehouseId": "WH-3"}

exactly as examples/acl-legacy-inventory.yaml does with configuration. Use it by dotted path as
the plugin `name` (the module must be importable, e.g. via PYTHONPATH=examples/plugins):

    routes:
    - name: stock
      service: legacy-inventory
      paths: ["~/api/stock/(?<productId>[^/]+)$"]
      plugins:
      - name: legacy_inventory_translator:LegacyInventoryTranslator
        config:
          legacy_path: /inventory
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from forecourt.pipeline import Context, PluginConfig, Response
from forecourt.plugins.translate import (
    OutboundRequest,
    TranslatedResponse,
    Translator,
    UpstreamResponse,
    problem_response,
)


class LegacyInventoryConfig(PluginConfig):
    legacy_path: str = "/inventory"


@dataclass(frozen=True, slots=True)
class StockLevel:
    """The clean domain model (the pattern guide's `StockLevel` record)."""

    product_id: str
    available_quantity: int
    warehouse_id: str

    @classmethod
    def from_legacy(cls, legacy: Any) -> StockLevel:
        """ValueError when the legacy answer does not hold a stock record."""
        if not isinstance(legacy, dict):
            raise ValueError("not a JSON object")
        try:
            return cls(str(legacy["sku_code"]), int(legacy["qty_avail"]), str(legacy["loc_id"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a stock record: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {
            "productId": self.product_id,
            "availableQuantity": self.available_quantity,
            "warehouseId": self.warehouse_id,
        }


class LegacyInventoryTranslator(Translator[LegacyInventoryConfig]):
    """GET /api/stock/{productId} on top of the legacy GET /inventory?sku=..."""

    name = "legacy-inventory-translator"
    Config = LegacyInventoryConfig
    # priority: Translator's default (790), after authentication and the transformers.

    def to_upstream(self, request: OutboundRequest) -> Response | None:
        product_id = request.uri_captures.get("productId")
        if not product_id:
            return problem_response(400, "Bad Request", "The path names no product.")
        request.path = self.config.legacy_path
        request.query = [("sku", product_id)]
        return None

    def from_upstream(self, ctx: Context, response: UpstreamResponse) -> TranslatedResponse | None:
        if response.status == 404:
            match = ctx.req.match
            product_id = match.uri_captures.get("productId", "") if match is not None else ""
            return TranslatedResponse.problem(
                404, "Product not found", f"No stock record for product {product_id}."
            )
        if response.status != 200:
            return TranslatedResponse.problem(503, "Service Unavailable", "Inventory is unavailable.")
        try:
            stock = StockLevel.from_legacy(response.json())
        except ValueError:
            return TranslatedResponse.problem(502, "Bad Gateway", "The inventory answer was not understood.")
        return TranslatedResponse.json(200, stock.to_json())
