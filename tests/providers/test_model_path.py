"""A model name is data: no adapter lets it change an upstream's path or query."""

from __future__ import annotations

import httpx2
import pytest

from polyroute.errors import BadRequestError, ProviderError
from polyroute.providers import HttpPool, Provider, ProviderClient, Secret, connect
from polyroute.providers._http import path_segment
from polyroute.providers.google import model_path
from polyroute.types import ChatRequest, EmbeddingRequest, Message

ATTACK = "tunedModels/../../../v1beta/cachedContents#"
HOSTILE = [
    ATTACK,
    "../../v1/files?x=1#",
    "a/b",
    "%2e%2e/x",
    "m?key=stolen",
    "..",
    "x\r\nhost: evil",
]
OTHERS = ["anthropic", "mistral", "ollama", "openai", "openai-compatible"]


def test_path_segment_encodes_everything_that_could_leave_the_segment() -> None:
    assert path_segment("gemini-2.0-flash_1.5~x") == "gemini-2.0-flash_1.5~x"
    assert path_segment("a/b?c#d%e f") == "a%2Fb%3Fc%23d%25e%20f"
    assert path_segment("модель\n") == "%D0%BC%D0%BE%D0%B4%D0%B5%D0%BB%D1%8C%0A"
    for dots in ("", ".", ".."):
        with pytest.raises(BadRequestError):
            path_segment(dots)


def test_google_keeps_its_two_collections_and_encodes_the_id() -> None:
    assert model_path("gemini-2.0-flash") == "models/gemini-2.0-flash"
    assert model_path("models/gemini-2.0-flash") == "models/gemini-2.0-flash"
    assert model_path("tunedModels/my-tune-1") == "tunedModels/my-tune-1"
    assert model_path(ATTACK) == "tunedModels/..%2F..%2F..%2Fv1beta%2FcachedContents%23"
    assert model_path("publishers/x") == "models/publishers%2Fx"


class Recorder:
    def __init__(self) -> None:
        self.urls: list[httpx2.URL] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.urls.append(request.url)
        return httpx2.Response(503)  # what comes back does not matter here


def _client(kind: str, recorder: Recorder) -> tuple[HttpPool, ProviderClient]:
    pool = HttpPool(transport=httpx2.MockTransport(recorder))
    return pool, connect(Provider(kind, kind, "http://127.0.0.1:9", Secret("k")), pool)


@pytest.mark.parametrize("model", HOSTILE)
async def test_google_paths_stay_under_the_model_collection(model: str) -> None:
    rec = Recorder()
    pool, client = _client("google", rec)
    with pytest.raises(ProviderError):  # 503, or refused before any call
        await client.complete(ChatRequest(model, [Message.user("hi")]))
    with pytest.raises(ProviderError):
        [e async for e in client.stream(ChatRequest(model, [Message.user("hi")]))]
    with pytest.raises(ProviderError):
        await client.embed(EmbeddingRequest(model, ("x",)))
    await pool.aclose()
    if model == "..":  # no encoding makes a dot segment safe: refused before any call
        assert rec.urls == []
        return
    assert len(rec.urls) == 3
    for url, (method, query) in zip(
        rec.urls,
        [
            (":generateContent", b""),
            (":streamGenerateContent", b"alt=sse"),
            (":batchEmbedContents", b""),
        ],
        strict=True,
    ):
        raw_path, _, raw_query = url.raw_path.partition(b"?")
        collection, _, rest = raw_path.decode().removeprefix("/v1beta/").partition("/")
        assert collection in ("models", "tunedModels")
        assert rest.endswith(method) and "/" not in rest and "#" not in rest
        assert raw_query == query and url.fragment == ""


@pytest.mark.parametrize("kind", OTHERS)
async def test_other_adapters_carry_the_model_in_the_body_only(kind: str) -> None:
    rec = Recorder()
    pool, client = _client(kind, rec)
    for model in ["plain-model", *HOSTILE]:
        with pytest.raises(ProviderError):
            await client.complete(ChatRequest(model, [Message.user("hi")]))
    await pool.aclose()
    plain, *hostile = [u.raw_path for u in rec.urls]
    assert hostile == [plain] * len(HOSTILE)
