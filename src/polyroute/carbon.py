"""Estimated emissions of a call, in one place: the carbon strategy ranks by it, every ledger
record carries it (``carbon_g``), and ``polyroute usage`` totals it and the savings against a
baseline provider.

The model. Compute per token is ``2 x params`` FLOPs (a transformer's forward pass; Kaplan
et al. 2020, "Scaling Laws for Neural Language Models"), turned into energy at an effective
1e11 FLOP per joule. That is Epoch AI's baseline in "How much energy does ChatGPT use?"
(2025): an H100 at 10 % utilisation drawing 70 % of its server's 1,275 W share, with a PUE
of 1.2, puts a 500-token GPT-4o answer (100B active parameters assumed) at 1e14 FLOP and
~0.3 Wh, i.e. ~9e10 FLOP/J. So ``J/token = 0.02 x params_b``, applied to prompt plus output
tokens (prefill runs at higher utilisation, so this errs high for long prompts; for
mixture-of-experts models the active parameters are what counts, and the catalog's
``params_b`` is what it knows). Times the provider's ``carbon_intensity`` (gCO2e/kWh), or 475
when it sets none: the IEA's world average for 2018 (its Electricity 2025 report gives 445
for 2024); local providers too, unless set. A model of unknown size has no estimate
(``None``), never 0 g.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from polyroute.errors import ConfigError

if TYPE_CHECKING:
    from polyroute.catalog import Catalog
    from polyroute.config import Config
    from polyroute.ledger import UsageReport

__all__ = [
    "DEFAULT_CARBON_INTENSITY",
    "FLOP_PER_JOULE",
    "Baseline",
    "baseline_of",
    "estimate_g",
    "grams_co2e",
    "with_savings",
]

DEFAULT_CARBON_INTENSITY = 475.0
"""gCO2e/kWh for providers that set none: a world-average grid (IEA, 2018 figure)."""
FLOP_PER_JOULE = 1e11
"""Effective inference efficiency (see the module docstring)."""
_KWH = 3.6e6  # joules


def grams_co2e(params_b: float, tokens: int, intensity: float | None) -> float:
    """Estimated gCO2e of ``tokens`` through a ``params_b``-billion-parameter model on a grid
    of ``intensity`` gCO2e/kWh (``None``: :data:`DEFAULT_CARBON_INTENSITY`)."""
    joules = tokens * 2 * params_b * 1e9 / FLOP_PER_JOULE
    grid = DEFAULT_CARBON_INTENSITY if intensity is None else intensity
    return joules / _KWH * grid


def estimate_g(params_b: float | None, tokens: int, intensity: float | None) -> float | None:
    """:func:`grams_co2e`, or ``None`` when the model's size is unknown; 0 for no tokens."""
    if not tokens:
        return 0.0
    if params_b is None:
        return None
    return grams_co2e(params_b, tokens, intensity)


@dataclass(frozen=True, slots=True)
class Baseline:
    """What ``[router] carbon_baseline`` names: the provider whose model the same tokens are
    estimated through, to say what routing saved."""

    provider: str
    model: str
    params_b: float
    carbon_intensity: float | None

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"

    def grams(self, tokens: int) -> float:
        return grams_co2e(self.params_b, tokens, self.carbon_intensity)


def baseline_of(config: Config, catalog: Catalog) -> Baseline | None:
    """The configured baseline (``None`` when unset): the provider's ``default_model``, else
    the first of its models (its ``models``, else the catalog's of its type) whose size the
    catalog knows. A :class:`ConfigError` when the id is not a provider or no model is sized."""
    name = config.settings.router.carbon_baseline
    if not name:
        return None
    where = f"{config.source}: router.carbon_baseline"
    spec = config.settings.providers.get(name)
    if spec is None:
        raise ConfigError(f"{where}: {name!r} is not a configured provider")
    models = [spec.default_model] if spec.default_model else []
    models += list(spec.models) or [m.id for m in catalog.for_type(spec.type)]
    for model in models:
        if model and not any(c in model for c in "*?["):  # a pattern names no one model
            params = catalog.get(spec.type, model).params_b
            if params is not None:
                return Baseline(name, model, params, spec.carbon_intensity)
    raise ConfigError(
        f"{where}: no model of {name!r} has a known size; set params_b in "
        f'[models."{models[0] if models else "MODEL"}"]'
    )


def with_savings(report: UsageReport, baseline: Baseline | None) -> UsageReport:
    """``report`` with what the same tokens would have emitted through ``baseline``."""
    if baseline is None:
        return report
    return replace(
        report,
        carbon_baseline=baseline.label,
        carbon_baseline_g=baseline.grams(report.carbon_tokens),
    )
