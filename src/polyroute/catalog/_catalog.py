"""The model catalog: what each model can do and what it costs.

Sources, later ones winning: the packaged ``models.toml`` (capabilities,
context, quality, fallback prices), the ``genai-prices`` database (prices for
every model it knows, tiers included), and the user's ``[models."..."]``
config. A model no source prices is *unpriced*: its cost is ``None``, never 0.
Local providers (Ollama) are free by declaration.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from polyroute._frozen import fast_init
from polyroute.types import CAPABILITIES, Capability, Usage

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo as GPModelInfo

PriceSource: TypeAlias = Literal["genai-prices", "catalog", "config", "local"]
Api: TypeAlias = Literal["chat", "responses"]
"""How the ``openai`` adapter calls a model: Chat Completions, or OpenAI's Responses API
(for the models served only there)."""
APIS: tuple[Api, ...] = ("chat", "responses")

LOCAL_TYPES = frozenset({"ollama"})
# What a model the catalog does not list can do, beyond chat, by provider type: these APIs
# take a JSON schema for any chat model (Ollama's ``format``, Mistral's ``response_format``,
# Anthropic's structured outputs or, on older models, a forced tool); Claude and Gemini
# models read PDFs.
_TYPE_CAPABILITIES: Mapping[str, frozenset[Capability]] = {
    "ollama": frozenset({"json_schema"}),
    "mistral": frozenset({"json_schema"}),
    "anthropic": frozenset({"json_schema", "pdf"}),
    "google": frozenset({"pdf"}),
}
_MAX_UNKNOWN = 1024
"""Entries kept for models the catalog does not list (a bound: callers can name any)."""

# polyroute provider type -> genai-prices provider id
_GENAI_PRICES_IDS: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "google",
    "mistral": "mistral",
}


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. A cache rate of ``None`` bills those tokens as input; a
    1-hour write with no rate of its own is billed as a 5-minute one."""

    input: float
    output: float
    cached_input: float | None = None
    """Cache reads."""
    source: PriceSource = "catalog"
    cache_write: float | None = None
    """Cache writes (Anthropic's 5-minute ones)."""
    cache_write_1h: float | None = None
    """Cache writes kept an hour."""

    def cost(self, usage: Usage) -> float:
        """Each input token once, at its own rate: cache reads, 5-minute writes, 1-hour
        writes, the rest at the input rate; output (reasoning included) at the output rate."""
        if not usage.cached_tokens and not usage.cache_write_tokens:  # the sum below, shorter
            return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1e6
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        written = min(usage.cache_write_tokens, usage.prompt_tokens - cached)
        written_1h = min(usage.cache_write_1h_tokens, written)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        write_rate = self.input if self.cache_write is None else self.cache_write
        write_1h_rate = write_rate if self.cache_write_1h is None else self.cache_write_1h
        return (
            (usage.prompt_tokens - cached - written) * self.input
            + cached * cached_rate
            + (written - written_1h) * write_rate
            + written_1h * write_1h_rate
            + usage.completion_tokens * self.output
        ) / 1_000_000


FREE = Price(0.0, 0.0, 0.0, source="local")


@dataclass(frozen=True, slots=True)
class CatalogModel:
    id: str
    provider_type: str
    context_window: int | None = None
    max_output_tokens: int | None = None
    capabilities: frozenset[Capability] = frozenset({"chat", "stream"})
    quality: float | None = None
    params_b: float | None = None
    price: Price | None = None
    known: bool = True
    """False for a model no source describes (capabilities are then a guess)."""
    api: Api = "chat"

    @property
    def priced(self) -> bool:
        return self.price is not None


@fast_init
@dataclass(frozen=True, slots=True)
class Cost:
    usd: float | None
    """``None`` when the model is unpriced: unknown, not free."""
    source: PriceSource | None


@dataclass(frozen=True, slots=True)
class ModelOverride:
    """A user's ``[models."id"]`` table: any field set here wins."""

    id: str
    provider_type: str | None = None
    input_usd_per_mtok: float | None = None
    output_usd_per_mtok: float | None = None
    cached_input_usd_per_mtok: float | None = None
    cache_write_usd_per_mtok: float | None = None
    cache_write_1h_usd_per_mtok: float | None = None
    context_window: int | None = None
    max_output_tokens: int | None = None
    quality: float | None = None
    capabilities: tuple[Capability, ...] | None = None
    params_b: float | None = None
    api: Api | None = None


@dataclass
class Catalog:
    """Models by ``(provider_type, id)``. Build with :meth:`load`."""

    models: dict[tuple[str, str], CatalogModel]
    local_types: frozenset[str] = LOCAL_TYPES
    """Provider types whose models are free by declaration (Ollama; local plugin types)."""
    _resolved: dict[tuple[str, str], CatalogModel] = field(default_factory=dict, repr=False)
    tool_fees: Mapping[tuple[str, str], float] = field(default_factory=dict, repr=False)
    """USD per call of a hosted tool, by ``(provider_type, tool type)``; a reasoning model's
    own rate by ``(provider_type, "reasoning." + tool type)``."""

    @classmethod
    def load(
        cls,
        overrides: Iterable[ModelOverride] = (),
        plugins: Iterable[CatalogModel] = (),
        local_types: Iterable[str] = (),
    ) -> Catalog:
        """``models.toml``, then provider plugins' models (``WireProtocol.catalog_models``),
        then the user's overrides; ``local_types``: plugin types that are local servers."""
        data = tomllib.loads(
            resources.files(__package__).joinpath("models.toml").read_text("utf-8")
        )
        packaged = [_from_table(t) for t in data["model"]]
        models = {(m.provider_type, m.id): m for m in (*packaged, *plugins)}
        for o in overrides:
            targets = [k for k in models if k[1] == o.id and o.provider_type in (None, k[0])]
            if not targets:
                if o.provider_type is None:
                    raise ValueError(f"models.{o.id}: provider_type is required for a new model")
                models[(o.provider_type, o.id)] = CatalogModel(o.id, o.provider_type)
                targets = [(o.provider_type, o.id)]
            for key in targets:
                models[key] = _apply(models[key], o)
        return cls(models, LOCAL_TYPES | frozenset(local_types), tool_fees=_tool_fees(data))

    def get(self, provider_type: str, model: str) -> CatalogModel:
        """The model's entry, prices resolved; an unknown model gets a best-effort entry."""
        key = (provider_type, model)
        hit = self._resolved.get(key)
        if hit is None:
            hit = self._resolve(provider_type, model)
            # names callers make up (a gateway pin) are resolved each time, not kept forever
            if key in self.models or len(self._resolved) < _MAX_UNKNOWN:
                self._resolved[key] = hit
        return hit

    def for_type(self, provider_type: str) -> list[CatalogModel]:
        return [self.get(t, m) for (t, m) in self.models if t == provider_type]

    def all(self) -> list[CatalogModel]:
        return [self.get(t, m) for (t, m) in self.models]

    def responses_models(self, provider_type: str) -> frozenset[str]:
        """The ids of ``provider_type``'s models called through the Responses API."""
        return frozenset(
            m.id for (t, _), m in self.models.items() if t == provider_type and m.api == "responses"
        )

    def tool_fee(self, provider_type: str, model: str, tool: str) -> float | None:
        """USD per call of hosted ``tool`` on ``model`` (``None``: no price known)."""
        if "reasoning" in self.get(provider_type, model).capabilities:
            fee = self.tool_fees.get((provider_type, f"reasoning.{tool}"))
            if fee is not None:
                return fee
        return self.tool_fees.get((provider_type, tool))

    def cost(self, provider_type: str, model: str, usage: Usage) -> Cost:
        """USD for this usage; tiered genai-prices models are priced by genai-prices itself."""
        entry = self.get(provider_type, model)
        if entry.price is None:
            return Cost(None, None)
        if entry.price.source == "genai-prices":
            exact = _genai_cost(provider_type, model, usage)
            if exact is not None:
                return Cost(exact, "genai-prices")
        return Cost(entry.price.cost(usage), entry.price.source)

    def _resolve(self, provider_type: str, model: str) -> CatalogModel:
        entry = self.models.get((provider_type, model))
        if entry is None and model.endswith(":latest"):  # Ollama's name for the bare tag
            base = self.models.get((provider_type, model.removesuffix(":latest")))
            entry = None if base is None else replace(base, id=model)
        known = entry is not None
        if entry is None:
            caps: frozenset[Capability] = frozenset({"chat", "stream"})
            caps |= _TYPE_CAPABILITIES.get(provider_type, frozenset())
            entry = CatalogModel(model, provider_type, capabilities=caps, known=False)
        if entry.price is not None and entry.price.source == "config":
            return entry  # the user's price wins, local models included
        if provider_type in self.local_types:
            return replace(entry, price=FREE)
        gp = _genai_model(provider_type, model)
        if gp is not None:
            price = _base_price(gp)
            if price is not None:
                entry = replace(entry, price=price)
            if entry.context_window is None and getattr(gp, "context_window", None):
                entry = replace(entry, context_window=gp.context_window)
        return entry if known or entry.price is not None else replace(entry, known=False)


def _tool_fees(data: Mapping[str, Any]) -> dict[tuple[str, str], float]:
    """``models.toml``'s ``[tool_fees]`` tables, flattened."""
    fees = {}
    for provider_type, table in data.get("tool_fees", {}).items():
        for tool, fee in table.items():
            if isinstance(fee, dict):  # a class of models' own rates
                fees.update({(provider_type, f"{tool}.{t}"): float(f) for t, f in fee.items()})
            else:
                fees[(provider_type, tool)] = float(fee)
    return fees


def _from_table(t: Mapping[str, Any]) -> CatalogModel:
    caps = tuple(t.get("capabilities", ("chat", "stream")))
    unknown = set(caps) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"catalog model {t['id']}: unknown capabilities {sorted(unknown)}")
    api = t.get("api", "chat")
    if api not in APIS:
        raise ValueError(f"catalog model {t['id']}: api {api!r} is not one of {list(APIS)}")
    price = None
    if "input_usd_per_mtok" in t:
        price = Price(
            float(t["input_usd_per_mtok"]),
            float(t["output_usd_per_mtok"]),
            t.get("cached_input_usd_per_mtok"),
            source="catalog",
            cache_write=t.get("cache_write_usd_per_mtok"),
            cache_write_1h=t.get("cache_write_1h_usd_per_mtok"),
        )
    return CatalogModel(
        id=t["id"],
        provider_type=t["provider_type"],
        context_window=t.get("context_window"),
        max_output_tokens=t.get("max_output_tokens"),
        capabilities=frozenset(caps),
        quality=t.get("quality"),
        params_b=t.get("params_b"),
        price=price,
        api=api,
    )


def _apply(m: CatalogModel, o: ModelOverride) -> CatalogModel:
    price = m.price
    if o.input_usd_per_mtok is not None or o.output_usd_per_mtok is not None:
        base = price or Price(0.0, 0.0)
        price = Price(
            o.input_usd_per_mtok if o.input_usd_per_mtok is not None else base.input,
            o.output_usd_per_mtok if o.output_usd_per_mtok is not None else base.output,
            o.cached_input_usd_per_mtok
            if o.cached_input_usd_per_mtok is not None
            else base.cached_input,
            source="config",
            cache_write=base.cache_write,
            cache_write_1h=base.cache_write_1h,
        )
    elif o.cached_input_usd_per_mtok is not None and price is not None:
        price = replace(price, cached_input=o.cached_input_usd_per_mtok, source="config")
    if price is not None and o.cache_write_usd_per_mtok is not None:
        price = replace(price, cache_write=o.cache_write_usd_per_mtok, source="config")
    if price is not None and o.cache_write_1h_usd_per_mtok is not None:
        price = replace(price, cache_write_1h=o.cache_write_1h_usd_per_mtok, source="config")
    return replace(
        m,
        context_window=o.context_window if o.context_window is not None else m.context_window,
        max_output_tokens=o.max_output_tokens
        if o.max_output_tokens is not None
        else m.max_output_tokens,
        quality=o.quality if o.quality is not None else m.quality,
        capabilities=frozenset(o.capabilities) if o.capabilities is not None else m.capabilities,
        params_b=o.params_b if o.params_b is not None else m.params_b,
        price=price,
        api=o.api if o.api is not None else m.api,
    )


def _genai_model(provider_type: str, model: str) -> GPModelInfo | None:
    pid = _GENAI_PRICES_IDS.get(provider_type)
    if pid is None:
        return None
    from genai_prices import data_snapshot  # deferred: a 250 ms import

    try:
        _, info = data_snapshot.get_snapshot().find_provider_model(model, None, pid, None)
    except LookupError:
        return None
    return info


def _rate(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, Decimal | int | float):
        return float(value)
    base = getattr(value, "base", None)  # TieredPrices: the first tier
    return float(base) if base is not None else None


def _base_price(info: GPModelInfo) -> Price | None:
    prices: Any = info.prices
    if isinstance(prices, list):  # conditional prices: the latest applies now
        prices = prices[-1].prices
    inp = _rate(getattr(prices, "input_mtok", None))
    out = _rate(getattr(prices, "output_mtok", None))
    if inp is None and out is None:
        return None
    return Price(
        inp or 0.0,
        out or 0.0,
        _rate(getattr(prices, "cache_read_mtok", None)),
        source="genai-prices",
        cache_write=_rate(getattr(prices, "cache_write_mtok", None)),
        cache_write_1h=_rate(getattr(prices, "cache_write_1h_mtok", None)),
    )


def _genai_cost(provider_type: str, model: str, usage: Usage) -> float | None:
    from genai_prices import Usage as GPUsage
    from genai_prices import calc_price

    try:
        calc = calc_price(
            GPUsage(
                input_tokens=usage.prompt_tokens,
                output_tokens=usage.completion_tokens,
                cache_read_tokens=usage.cached_tokens or None,
                cache_write_tokens=usage.cache_write_tokens or None,
                cache_write_1h_tokens=usage.cache_write_1h_tokens or None,
            ),
            model,
            provider_id=_GENAI_PRICES_IDS[provider_type],
            genai_request_timestamp=datetime.now(UTC),
        )
    except LookupError:
        return None
    return float(calc.total_price)
