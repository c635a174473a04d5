"""Fault-injection behaviors and request records for the fake LLM backend."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakellm_wire import last_user_text


@dataclass(frozen=True)
class Reply:
    """Answer normally after `delay`, with `content` or the server's reply_fn output."""

    content: str | None = None
    delay: float = 0
    finish_reason: str = "stop"


@dataclass(frozen=True)
class Status:
    """Answer with an HTTP error; `body` defaults to the path's native error shape."""

    code: int
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] | None = None
    delay: float = 0


@dataclass(frozen=True)
class Drop:
    """Close the socket with no response, or right after the status line and headers."""

    after_headers: bool = False


@dataclass(frozen=True)
class Hang:
    """Never answer; the request ends when the client disconnects or the server stops."""


@dataclass(frozen=True)
class BadJson:
    """Answer 200 with unparseable content when the request asked for JSON output."""


def Slow(seconds: float, content: str | None = None) -> Reply:  # noqa: N802 - reads as a behavior
    """Return a normal reply that arrives after `seconds`."""
    return Reply(content=content, delay=seconds)


Behavior = Reply | Status | Drop | Hang | BadJson
ReplyFn = Callable[[dict[str, Any]], str]


@dataclass
class RecordedRequest:
    """One request as the fake saw it; `outcome` is set once the fake decides the answer."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any | None
    received_at: float
    model: str | None
    outcome: str = "pending"

    @property
    def prompt(self) -> str:
        """Text of the last user message (or Ollama's `prompt`)."""
        return last_user_text(self.json)


RuleFn = Callable[[RecordedRequest], Behavior | None]


@dataclass
class Faults:
    """Random-fault settings; draw() picks a failure behavior or None."""

    rate: float
    kinds: tuple[str, ...]
    rng: random.Random
    retry_after: float
    timeout_seconds: float

    def draw(self) -> Behavior | None:
        """Return a failure for this request with probability `rate`, else None."""
        if not self.kinds or self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        if kind == "drop":
            return Drop()
        if kind == "timeout":
            return Reply(delay=self.timeout_seconds)
        if kind == "bad_json":
            return BadJson()
        code = int(kind)
        retry = {"Retry-After": f"{self.retry_after:g}"} if code == 429 else None
        return Status(code, headers=retry)
