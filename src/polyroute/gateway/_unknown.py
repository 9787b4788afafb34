"""Unknown routes (404) and methods a route does not take (405), in the caller's API
shape (DESIGN.md §9): an Anthropic error body when the request looks Anthropic (an
``anthropic-version`` header, or a ``/v1/messages`` path), else OpenAI's. Never plain
text: an SDK parses the body into its error."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from polyroute.gateway import _anthropic, _openai
from polyroute.gateway._chat import problem_response
from polyroute.gateway._observe import note_of
from polyroute.gateway._wire import Problem, dumps


def _anthropic_caller(request: Request) -> bool:
    return "anthropic-version" in request.headers or request.url.path.startswith("/v1/messages")


async def unknown_route(request: Request, exc: Exception) -> Response:
    """The app's handler for the router's 404 and 405."""
    assert isinstance(exc, HTTPException)
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        problem = Problem(
            405,
            "invalid_request",
            f"{where}: method not allowed (allowed: {allowed})",
            code="method_not_allowed",
        )
    else:
        problem = Problem(404, "not_found", f"{where}: no such route", code="unknown_route")
    if _anthropic_caller(request):
        body = dumps(_anthropic.error_object(problem))
    else:
        body = dumps({"error": _openai.error_object(problem)})
    response = problem_response(body, problem, note_of(request.scope))
    if exc.headers:
        response.headers.update(exc.headers)
    return response
