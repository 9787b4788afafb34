"""The built-in redact hook on a corpus: every positive masked (with its kind), every
near-miss (versions, dates, addresses, prices, hashes, ordinary words) left intact."""

from __future__ import annotations

import pytest

from polyroute.hooks import HookContext, Hooks, RedactHook, redact_text
from polyroute.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    ImagePart,
    Message,
    TextPart,
    ToolCall,
    Usage,
)

# (text containing it, the secret itself, the kind it is masked as)
POSITIVES = [
    ("mail me at jane.doe@example.com today", "jane.doe@example.com", "email"),
    ("cc: ops+alerts@mail.corp.example.co.uk", "ops+alerts@mail.corp.example.co.uk", "email"),
    ("call +1 415 555 0100 now", "+1 415 555 0100", "phone"),
    ("phone: +44 20 7946 0958", "+44 20 7946 0958", "phone"),
    ("tel +33 1 23 45 67 89.", "+33 1 23 45 67 89", "phone"),
    ("whatsapp +4915123456789", "+4915123456789", "phone"),
    ("office (415) 555-0100 ext", "(415) 555-0100", "phone"),
    ("us 415-555-0100", "415-555-0100", "phone"),
    ("dotted 415.555.0100", "415.555.0100", "phone"),
    ("uk 020 7946 0958", "020 7946 0958", "phone"),
    ("fr 01 23 45 67 89", "01 23 45 67 89", "phone"),
    ("de 030 1234567", "030 1234567", "phone"),
    ("mobile 07700 900123", "07700 900123", "phone"),
    (
        "key sk-abcdefghijklmnopqrstuvwxyz0123456789ABCD ok",
        "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        "openai_key",
    ),
    (
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_-Q7",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_-Q7",
        "openai_key",
    ),
    (
        "sk-ant-api03-AbCdEf0123456789_xyzXYZ-abc",
        "sk-ant-api03-AbCdEf0123456789_xyzXYZ-abc",
        "anthropic_key",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE", "aws_key"),
    (
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "github_token",
    ),
    (
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
        "github_token",
    ),
    (
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        "AIzaSyA-1234567890abcdefghijklmnopqrstu",
        "google_key",
    ),
    (
        "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
        "xoxb-1234567890-0987654321-AbCdEfGhIjKl",
        "slack_token",
    ),
    ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe_key"),
    (
        "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "jwt",
    ),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn\n/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n-----END RSA PRIVATE KEY-----",
        "MIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn",
        "private_key",
    ),
    ("api_key = 'Zx81kQp0LmN4vB7tYw2E'", "Zx81kQp0LmN4vB7tYw2E", "secret"),
    ('{"client_secret": "f3A9kLq02xZp7MvR1tY8"}', "f3A9kLq02xZp7MvR1tY8", "secret"),
    ("PASSWORD=hunter2hunter2XY99zz", "hunter2hunter2XY99zz", "secret"),
]

NEAR_MISSES = [
    "Upgrade to version 1.2.3 or v2.10.14-rc1 of the library.",
    "Python 3.11.4 and numpy==1.26.4",
    "The meeting is on 2024-01-15 at 10:30, or 15/01/2024, or 2024-01-15 10:30:00.",
    "Server at 192.168.1.100 and 10.0.0.1:8080",
    "It costs $1,299.00, or 1 299,00 EUR; 100 000 000 people.",
    "Commit 3f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39 fixed it (short 3f2a9c1).",
    "Hire for skill-based work; sk-learn and risk-free tasks; the sky-blue desk.",
    "UUID 123e4567-e89b-12d3-a456-426614174000 is a record id.",
    "Order 1733472000 shipped; ISBN 978-3-16-148410-0.",
    "Use react@18.2.0 and @pytest.mark.parametrize; user@localhost is local.",
    "The tokenizer splits tokens: 'token count' is 512.",
    "password: correct horse battery staple",
    "secret = short",
    "Tel-Aviv, A4 paper, 3.14159, 1e-9, x86-64, IPv6 ::1",
    "Task takes 12-15 minutes; chapters 3-4; pages 120-135.",
]


@pytest.mark.parametrize(("text", "secret", "kind"), POSITIVES)
def test_each_positive_is_masked(text: str, secret: str, kind: str) -> None:
    out = redact_text(text)
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out


@pytest.mark.parametrize("text", NEAR_MISSES)
def test_each_near_miss_is_left_intact(text: str) -> None:
    assert redact_text(text) == text


def test_the_text_around_a_secret_is_kept() -> None:
    assert redact_text("write to a@b.io or call +1 415 555 0100.") == (
        "write to [REDACTED:email] or call [REDACTED:phone]."
    )
    assert redact_text("api_key = 'Zx81kQp0LmN4vB7tYw2E'") == "api_key = '[REDACTED:secret]'"


async def test_every_text_a_request_carries_is_masked() -> None:
    """Messages (text parts too), an assistant's tool call arguments and tool results;
    an image and the message structure are left as they were."""
    image = ImagePart(url="https://example.com/x.png")
    request = ChatRequest(
        "m",
        (
            Message.system("Support bot. Escalate to boss@corp.example.com."),
            Message.user((TextPart("My number is +1 415 555 0100"), image)),
            Message.assistant("", (ToolCall("c1", "lookup", '{"email": "jane@x.org"}'),)),
            Message.tool("c1", "found AKIAIOSFODNN7EXAMPLE in the env", name="lookup"),
        ),
    )
    out = await RedactHook().pre_request(request, HookContext("chat"))
    assert out.messages[0].text == "Support bot. Escalate to [REDACTED:email]."
    assert out.messages[1].parts == (TextPart("My number is [REDACTED:phone]"), image)
    assert out.messages[2].tool_calls[0].arguments == '{"email": "[REDACTED:email]"}'
    assert out.messages[3].text == "found [REDACTED:aws_key] in the env"
    assert out.messages[3].tool_call_id == "c1"


async def test_embedding_inputs_are_masked_and_token_ids_left() -> None:
    hook = RedactHook()
    ctx = HookContext("embeddings")
    out = await hook.pre_embed(EmbeddingRequest("e", ["jane@x.org", "plain"]), ctx)
    assert list(out.inputs) == ["[REDACTED:email]", "plain"]
    ids = EmbeddingRequest("e", [[1, 2, 3]])
    assert await hook.pre_embed(ids, ctx) is ids


async def test_answers_are_masked_only_with_responses() -> None:
    answer = ChatResponse("reach me at jane@x.org", "m", "stop", Usage())
    ctx = HookContext("chat")
    assert (await RedactHook().post_response(answer, ctx)).content == answer.content
    assert RedactHook().stream_filter(ctx) is None
    masked = await RedactHook(responses=True).post_response(answer, ctx)
    assert masked.content == "reach me at [REDACTED:email]"


async def _streamed(pieces: list[str]) -> tuple[list[str], str]:
    hooks = Hooks([("redact", RedactHook(responses=True))], timeout_s=5)
    filters = hooks.filters(HookContext("chat", stream=True))
    out = [await hooks.chunk(filters, p) for p in pieces]
    out.append(await hooks.end(filters))
    return out, "".join(out)


async def test_a_secret_split_across_chunks_is_masked() -> None:
    """Text that may be the start of something to mask is held until the next piece shows
    where it ends: a key, an address or a phone number split anywhere is still masked."""
    key = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_-Q7"
    text = (
        f"Your key is {key}, mail jane.doe@example.com or call +1 415 555 0100 today. "
        "Config: api_key = 'Zx81kQp0LmN4vB7tYw2E' done."
    )
    for size in (1, 3, 7, 16):
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        out, joined = await _streamed(pieces)
        assert joined == (
            "Your key is [REDACTED:openai_key], mail [REDACTED:email] or call "
            "[REDACTED:phone] today. Config: api_key = '[REDACTED:secret]' done."
        )
        assert not any(key[:12] in p or "jane" in p or "415" in p or "Zx81" in p for p in out)


async def test_a_private_key_block_streamed_line_by_line_is_masked() -> None:
    block = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAbC+/xyz\n-----END PRIVATE KEY-----"
    out, joined = await _streamed(["Here:\n", *block.splitlines(keepends=True), "\ndone"])
    assert joined == "Here:\n[REDACTED:private_key]\ndone"
    assert not any("MIIE" in p for p in out)


async def test_text_without_spaces_is_not_held_to_the_end() -> None:
    """A long run with no space (CJK text, say) is passed on once past the hold limit."""
    out, joined = await _streamed(["漢字" * 100, "漢字" * 100, "。"])
    assert joined == "漢字" * 200 + "。"
    assert out[1]  # passed on before the stream's end


@pytest.mark.parametrize(
    "text",
    [
        "sk-" * 20000,
        "sk-ant-" * 10000,
        "-----BEGIN PRIVATE KEY-----\n" * 5000,
        "github_pat_" * 10000,
        "xoxb-" * 20000,
        "api_key=" * 20000,
        "a@" * 50000,
        "1-" * 50000,
        "漢" * 50000 + "\n",
    ],
)
async def test_pathological_text_is_handled_in_linear_time(text: str) -> None:
    """Every repeat in the patterns is bounded and the stream's tail is looked for near the
    end only: a quadratic pattern took minutes on some of these."""
    out = redact_text(text)  # some of these look like tokens: masked or left, not stuck
    assert out == text or "[REDACTED:" in out
    _, joined = await _streamed([text[: len(text) // 2], text[len(text) // 2 :]])
    assert joined == text or "[REDACTED:" in joined
