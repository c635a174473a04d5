"""PII redaction: what is found, what is left alone, and placeholders put back."""

from __future__ import annotations

import asyncio

from shared.backends import ChatRequest, ChatResult
from shared.redaction import RedactingAdapter, Redactor, iban_ok, luhn_ok

PLANTED = (
    "Write to anna.berg@example.com or a+b@mail.co.uk. Call +49 171 1234567, "
    "(555) 123-4567 or 030 1234567. Card 4111 1111 1111 1111 and 5500-0000-0000-0004. "
    "IBAN DE89 3704 0044 0532 0130 00 AND GB82WEST12345698765432."
)
SECRETS = [
    "anna.berg@example.com", "a+b@mail.co.uk", "171 1234567", "123-4567", "030 1234567",
    "4111 1111 1111 1111", "5500-0000-0000-0004", "DE89 3704", "GB82WEST12345698765432",
]


def test_checksums() -> None:
    assert luhn_ok("4111111111111111")
    assert not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00")
    assert not iban_ok("DE88 3704 0044 0532 0130 00")


def test_every_planted_item_is_replaced_and_counted() -> None:
    redactor = Redactor()
    out = redactor.redact(PLANTED)
    for secret in SECRETS:
        assert secret not in out
    assert dict(redactor.counts) == {"email": 2, "phone": 3, "credit_card": 2, "iban": 2}
    assert "[EMAIL_1]" in out
    assert "[IBAN_2]" in out
    assert " AND " in out
    assert redactor.restore(out) == PLANTED


def test_ordinary_numbers_are_left_alone() -> None:
    text = "Order 2024-05-01, 1,234,567 EUR, invoice 12345, card 4111 1111 1111 1112, v1.2.3."
    redactor = Redactor()
    assert redactor.redact(text) == text
    assert not redactor.counts


def test_same_value_same_placeholder() -> None:
    redactor = Redactor()
    out = redactor.redact("a@b.io then a@b.io then c@d.io")
    assert out == "[EMAIL_1] then [EMAIL_1] then [EMAIL_2]"


class _Echo:
    def __init__(self) -> None:
        self.seen: list[ChatRequest] = []

    async def chat(self, request: ChatRequest, on_delta: object = None) -> ChatResult:
        self.seen.append(request)
        return ChatResult(content="reply to " + request.messages[-1]["content"])

    async def list_models(self) -> list[str]:
        return []

    async def aclose(self) -> None:
        return None


def test_adapter_sends_redacted_text_and_restores_the_answer() -> None:
    inner, stored = _Echo(), []
    adapter = RedactingAdapter(inner, stored.append)
    request = ChatRequest(messages=[{"role": "user", "content": "mail a@b.io now"}])
    result = asyncio.run(adapter.chat(request))
    assert inner.seen[0].messages[0]["content"] == "mail [EMAIL_1] now"
    assert result.content == "reply to mail a@b.io now"
    assert request.messages[0]["content"] == "mail a@b.io now"  # the caller's copy untouched
    assert stored == [{"email": 1}]
