"""The curated public surface, and a light import."""

from __future__ import annotations

import subprocess
import sys

import polyroute


def test_every_public_name_resolves() -> None:
    for name in polyroute.__all__:
        assert getattr(polyroute, name) is not None, name


def test_all_is_exactly_the_exports() -> None:
    assert set(polyroute.__all__) == {"__version__", *polyroute._EXPORTS}


def test_fusion_is_public() -> None:
    fusion = {
        "FusionResult",
        "FusionMetrics",
        "MemberResponse",
        "FusionError",
        "NotEnoughAnswersError",
        "FusionCostCapError",
    }
    assert fusion <= set(polyroute.__all__)
    assert issubclass(polyroute.NotEnoughAnswersError, polyroute.FusionError)
    assert issubclass(polyroute.FusionCostCapError, polyroute.PolyrouteError)
    assert callable(polyroute.Polyroute.fuse) and callable(polyroute.SyncPolyroute.fuse)


def test_unknown_attribute_is_an_attribute_error() -> None:
    try:
        polyroute.nope  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_stays_light() -> None:
    code = (
        "import sys, polyroute, polyroute.cli; "
        "heavy = {'httpx2', 'pydantic', 'genai_prices', 'rich', 'starlette', 'uvicorn', 'sqlalchemy'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_gateway_loads_fusions_similarity_only_to_fuse() -> None:
    """rapidfuzz is 7 MiB resident: a gateway that never fuses does not carry it."""
    code = (
        "import sys, polyroute.gateway, polyroute.fusion; "
        "print('rapidfuzz' in sys.modules); "
        "from polyroute.fusion import similarity; similarity('a', 'b'); "
        "print('rapidfuzz' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True"]


def test_routing_outcomes_share_a_base_and_stay_provider_errors() -> None:
    for cls in (polyroute.NoCandidateError, polyroute.AllProvidersFailedError):
        assert issubclass(cls, polyroute.RoutingError)
        assert issubclass(cls, polyroute.ProviderError)  # caught as before


def test_errors_import_nothing_above_the_shared_vocabulary() -> None:
    code = (
        "import sys, polyroute.errors; "
        "print(sorted(m for m in sys.modules if m.startswith('polyroute.') "
        "and m not in ('polyroute.errors', 'polyroute.types', 'polyroute._frozen')))"
    )  # _frozen: the records' __init__ (the standard library alone)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
    assert polyroute.Attempt.__module__ == polyroute.Excluded.__module__ == "polyroute.types"
