"""The read endpoints: models, health, router state, usage, metrics, and the dashboard page."""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any, get_args

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from polyroute.errors import ConfigError, GatewayError, LedgerError, PolyrouteError
from polyroute.gateway import _anthropic, _openai
from polyroute.gateway._chat import JSON, problem_response
from polyroute.gateway._observe import Metrics, note_of
from polyroute.gateway._problems import problem_of
from polyroute.gateway._select import ALIASES, Selector
from polyroute.gateway._wire import dumps
from polyroute.ledger import GroupBy
from polyroute.ledger import parse_since as since_start

if TYPE_CHECKING:
    from polyroute.client import Polyroute
    from polyroute.gateway._auth import Auth, Caller

EXCLUDED_SHOWN = 10
"""Excluded pairs listed per recent decision (the rest are counted)."""

_PLACEHOLDER = """<!doctype html><title>polyroute</title>
<p>polyroute gateway: see <a href="/router/state">/router/state</a>."""


USAGE_BY: tuple[GroupBy, ...] = get_args(GroupBy)
"""``/usage?by=``: what the totals can be grouped by."""


def parse_since(value: str, now: float | None = None) -> float:
    """``/usage?since=``, as ``polyroute usage --since`` reads it; a bad value is a 400."""
    try:
        return since_start(value, now)
    except ValueError as exc:
        raise GatewayError(f"'since' {exc}", param="since") from None


def usage_query(query: Mapping[str, str]) -> tuple[GroupBy, str | None, float | None]:
    """``/usage``'s ``by``, ``provider`` and ``since`` (Unix time); a bad one is a 400."""
    by = query.get("by") or "provider"
    if by not in USAGE_BY:
        raise GatewayError(
            f"'by' must be one of {', '.join(USAGE_BY)}, not {by[:40]!r}", param="by"
        )
    since = query.get("since")
    return by, query.get("provider") or None, parse_since(since) if since else None


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.S)
_NONE = "'none'"


def page_headers(html: str) -> dict[str, str]:
    """A page that runs only its own inline scripts (by hash), talks only to this gateway,
    loads nothing else, and is framed by no one (the admin key lives in it)."""
    scripts = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
        for s in _INLINE_SCRIPT.findall(html)
    )
    policy = (
        f"default-src 'none'; script-src {scripts or _NONE}; style-src 'unsafe-inline'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return {
        "content-security-policy": policy,
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
    }


def _json(data: Any) -> Response:
    return Response(dumps(data), 200, media_type=JSON)


def _refused(exc: PolyrouteError, request: Request, *, anthropic: bool = False) -> Response:
    problem = problem_of(exc)
    error = (
        _anthropic.error_object(problem) if anthropic else {"error": _openai.error_object(problem)}
    )
    return problem_response(dumps(error), problem, note_of(request.scope))


class Reads:
    """The read endpoints of one gateway."""

    def __init__(self, polyroute: Polyroute, auth: Auth, selector: Selector, metrics: Metrics):
        self.pr = polyroute
        self.auth = auth
        self.selector = selector
        self.metrics = metrics

    async def models(self, request: Request) -> Response:
        """Served models (``provider/model`` and bare) and the routing aliases; an
        Anthropic SDK (``anthropic-version`` header) gets the Anthropic list shape."""
        try:
            caller = await self.auth.caller(request.headers)
        except GatewayError as exc:
            return _refused(exc, request)
        listed = self._listed(caller)
        if "anthropic-version" in request.headers:
            return Response(_anthropic.render_models(listed), 200, media_type=JSON)
        return Response(_openai.render_models(listed), 200, media_type=JSON)

    async def model(self, request: Request) -> Response:
        """One of ``models``' entries (``provider/model`` ids included), in the caller's
        API shape; an id the list does not show is a 404."""
        anthropic = "anthropic-version" in request.headers
        model_id = request.path_params["model_id"]
        try:
            caller = await self.auth.caller(request.headers)
        except GatewayError as exc:
            return _refused(exc, request, anthropic=anthropic)
        owner = dict(self._listed(caller)).get(model_id)
        if owner is None:
            unknown = GatewayError(
                f"unknown model {model_id!r}: GET /v1/models lists the served models and aliases",
                status=404,
                param="model",
            )
            return _refused(unknown, request, anthropic=anthropic)
        if anthropic:
            return Response(_anthropic.render_model(model_id), 200, media_type=JSON)
        return Response(_openai.render_model(model_id, owner), 200, media_type=JSON)

    def _listed(self, caller: Caller) -> list[tuple[str, str]]:
        """``(id, owner)`` of every model and alias ``caller`` may use."""
        entries: dict[str, str] = {}
        for pid in self.pr.config.enabled():
            spec = self.pr.config.settings.providers[pid]
            models = self.pr.models_of(pid)
            if spec.default_model and spec.default_model not in models:
                models.append(spec.default_model)
            for m in models:
                entries.setdefault(f"{pid}/{m}", pid)
                entries.setdefault(m, pid)
        for alias in ALIASES:
            entries[alias] = "polyroute"
        key = caller.key
        return [
            (mid, owner)
            for mid, owner in entries.items()
            if key is None or not key.models or key.allows(mid)
        ]

    async def health(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def providers(self, request: Request) -> Response:
        """The latest probe of each enabled provider (open, like ``/health``); ``?check=1``
        probes them now, which needs the admin key (it calls every vendor)."""
        if request.query_params.get("check") in ("1", "true", "yes"):
            try:
                self.auth.require_admin(request.headers)
            except GatewayError as exc:
                return _refused(exc, request)
            await self.pr.health()
        return _json({"providers": self._health()})

    def _health(self) -> list[dict[str, Any]]:
        status = self.pr.health_monitor.status
        out = []
        for pid in self.pr.config.enabled():
            s = status.get(pid)
            out.append(
                {"provider": pid, "ok": None, "checked_at": None} if s is None else s.as_dict()
            )
        return out

    async def state(self, request: Request) -> Response:
        """Breakers, health, budgets left, learned latencies, recent decisions."""
        pr = self.pr
        try:
            self.auth.require_admin(request.headers)
            budgets = await pr.budgets()
        except (GatewayError, LedgerError) as exc:
            return _refused(exc, request)
        latency = [
            {"provider": p, "model": m, "latency_ms": lat, "ttft_ms": ttft, "samples": n}
            for (p, m), (lat, ttft, n) in sorted(pr.stats.snapshot().items())
        ]
        recent = []
        for r in reversed(pr.recent):
            d = r.decision.as_dict()
            excluded = d.pop("excluded")
            d["excluded"] = excluded[:EXCLUDED_SHOWN]
            d["excluded_count"] = len(excluded)
            recent.append({"at": r.at, "stream": r.stream, "key": r.virtual_key, **d})
        providers = [
            {"id": pid, "type": pr.config.settings.providers[pid].type}
            for pid in pr.config.enabled()
        ]
        return _json(
            {
                "at": time.time(),
                "providers": providers,
                "breakers": {pid: pr.breakers.get(pid).as_dict() for pid in pr.config.enabled()},
                "health": self._health(),
                "budgets": [b.as_dict() for b in budgets],
                "latency": latency,
                "recent": recent,
            }
        )

    async def usage(self, request: Request) -> Response:
        """Ledger totals in ``polyroute usage --json``'s shape (DESIGN.md §5): ``?by=`` day,
        month, provider (default) or model; ``since=`` ``YYYY-MM-DD`` or ``Nd``;
        ``provider=ID``. Needs the admin key, like ``/router/state``."""
        try:
            self.auth.require_admin(request.headers)
            by, provider, since = usage_query(request.query_params)
            report = await self.pr.usage(by=by, provider=provider, since=since)
        except (GatewayError, LedgerError, ConfigError) as exc:  # a baseline of unknown size
            return _refused(exc, request)
        return _json(report.as_dict())

    async def metrics_text(self, request: Request) -> Response:
        try:
            self.auth.require_admin(request.headers)
        except GatewayError as exc:
            return _refused(exc, request)
        body = generate_latest(self.metrics.registry)
        return Response(body, 200, media_type=CONTENT_TYPE_LATEST)

    async def dashboard(self, request: Request) -> Response:
        """``static/index.html`` (read on each visit: it can change under a running gateway)."""
        page = resources.files("polyroute.gateway").joinpath("static", "index.html")
        try:
            html = page.read_text("utf-8")
        except FileNotFoundError:
            html = _PLACEHOLDER
        return HTMLResponse(html, headers=page_headers(html))
