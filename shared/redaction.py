"""PII redaction before text leaves for a cloud backend, and restoration in the answer.

Found: e-mail addresses, IBANs (ISO 13616 mod-97 checked), payment card numbers (Luhn
checked) and phone numbers (international `+…` or national with a leading 0 or a
`(area)` group, 7–15 digits). Each distinct value becomes a placeholder such as
`[EMAIL_1]`; the same value gets the same placeholder within a step, and placeholders the
model repeats are put back in its answer. Names are not detected: no well-kept library for it
works offline without a downloaded language model.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from shared.backends import BackendConfig, ChatRequest, ChatResult
from shared.db import session_scope
from shared.models import StepRedaction, Tenant

CLOUD_KINDS = frozenset({"openai", "azure_openai"})

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b")
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?(?:\(0\)[ .-]?)?|\(\d{2,5}\)[ .-]?|0)\d(?:[ .-]?\d){5,13}(?!\d)"
)
_PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|IBAN|CARD)_(\d+)\]")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a card number holds."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    """The ISO 13616 mod-97 check of an IBAN holds."""
    compact = text.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    moved = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in moved)
    return int(number) % 97 == 1


def _card_ok(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone_ok(match: str) -> bool:
    return 7 <= len(re.sub(r"\D", "", match)) <= 15


_DETECTORS: list[tuple[str, re.Pattern[str], Callable[[str], bool]]] = [
    ("EMAIL", _EMAIL, lambda _m: True),
    ("IBAN", _IBAN, iban_ok),
    ("CARD", _CARD, _card_ok),
    ("PHONE", _PHONE, _phone_ok),
]
_KIND_NAMES = {"EMAIL": "email", "IBAN": "iban", "CARD": "credit_card", "PHONE": "phone"}


@dataclass
class Redactor:
    """Replaces PII with placeholders and remembers them to restore answers."""

    values: dict[str, str] = field(default_factory=dict)  # placeholder -> original
    _by_value: dict[tuple[str, str], str] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)

    def _placeholder(self, kind: str, value: str) -> str:
        key = (kind, value)
        if key not in self._by_value:
            n = sum(1 for k, _ in self._by_value if k == kind) + 1
            self._by_value[key] = f"[{kind}_{n}]"
            self.values[self._by_value[key]] = value
        self.counts[_KIND_NAMES[kind]] += 1
        return self._by_value[key]

    def _swap(self, kind: str, valid: Callable[[str], bool], match: re.Match[str]) -> str:
        value = match.group(0)
        # A greedy match may run into the next word ("DE89 … 00 AND"): try shorter cuts.
        for end in range(len(value), 0, -1):
            if end < len(value) and value[end] not in " -":
                continue
            head = value[:end].rstrip(" -")
            if valid(head):
                return self._placeholder(kind, head) + value[len(head):]
            if kind == "EMAIL":
                break
        return value

    def redact(self, text: str) -> str:
        """The text with every detected item replaced by its placeholder."""
        for kind, pattern, valid in _DETECTORS:

            text = pattern.sub(functools.partial(self._swap, kind, valid), text)
        return text

    def restore(self, text: str) -> str:
        """Placeholders the model repeated, put back to the original values."""
        return _PLACEHOLDER.sub(lambda m: self.values.get(m.group(0), m.group(0)), text)

    def redact_request(self, request: ChatRequest) -> ChatRequest:
        """A copy of the request whose message texts are redacted."""
        messages = [
            {**msg, "content": self.redact(msg["content"])}
            if isinstance(msg.get("content"), str) else msg
            for msg in request.messages
        ]
        return dataclasses.replace(request, messages=messages)


DeltaSink = Callable[[str], Awaitable[None]]


class ChatAdapter(Protocol):
    """The part of a worker's backend adapter redaction wraps."""

    async def chat(
        self, request: ChatRequest, on_delta: DeltaSink | None = None
    ) -> ChatResult: ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...


class RedactingAdapter:
    """An adapter that redacts every outgoing request and restores every answer."""

    def __init__(self, inner: ChatAdapter, on_counts: Callable[[dict[str, int]], None]) -> None:
        self.inner = inner
        self.on_counts = on_counts
        self.counts: Counter[str] = Counter()

    async def chat(self, request: ChatRequest, on_delta: DeltaSink | None = None) -> ChatResult:
        redactor = Redactor()
        outgoing = redactor.redact_request(request)
        # A repair call re-sends the same messages: keep, per kind, the most any one call
        # carried instead of adding them up.
        self.counts = self.counts | redactor.counts
        if redactor.counts:
            await asyncio.to_thread(self.on_counts, dict(self.counts))
        # Streamed deltas still carry placeholders; the stored answer is restored below.
        result = await self.inner.chat(outgoing, on_delta)
        result.content = redactor.restore(result.content)
        return result

    async def list_models(self) -> list[str]:
        return await self.inner.list_models()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def redacting_adapter(
    sessions: sessionmaker[Session],
    backends: dict[str, BackendConfig],
    step: StepRef,
    adapter: ChatAdapter,
) -> ChatAdapter:
    """The adapter to run a step with: redacting for a cloud backend of a redacting tenant."""
    config = backends.get(step.backend)
    if config is None or config.kind not in CLOUD_KINDS:
        return adapter
    if step.redact_pii is None:
        with session_scope(sessions) as session:
            enabled = session.scalar(
                select(Tenant.redact_pii).where(Tenant.id == step.tenant_id)
            )
    else:
        enabled = step.redact_pii  # read with the claim: no transaction of its own
    if not enabled:
        return adapter

    def store(counts: dict[str, int]) -> None:
        # Only counts, keyed by step (a re-run overwrites): never the values themselves.
        with session_scope(sessions) as session:
            row = session.get(StepRedaction, step.id)
            if row is None:
                session.add(StepRedaction(
                    step_id=step.id, job_id=step.job_id, tenant_id=step.tenant_id, counts=counts
                ))
            else:
                row.counts = counts

    return RedactingAdapter(adapter, store)


def job_redactions(session: Session, job_id: str) -> dict[str, int]:
    """What was redacted across a job's steps, by kind."""
    total: Counter[str] = Counter()
    query = select(StepRedaction.counts).where(StepRedaction.job_id == job_id)
    for counts in session.scalars(query):
        total.update({k: int(v) for k, v in counts.items()})
    return dict(total)


class StepRef(Protocol):
    """What redaction needs to know about a claimed step."""

    @property
    def id(self) -> str: ...

    @property
    def job_id(self) -> str: ...

    @property
    def tenant_id(self) -> str: ...

    @property
    def backend(self) -> str: ...

    @property
    def redact_pii(self) -> bool | None: ...  # None: not known yet, read it
