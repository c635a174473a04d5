"""Send one signed webhook to a vetted address, and decide when to try again."""

from __future__ import annotations

import ipaddress
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from shared.retry_after import parse_retry_after
from shared.webhooks.ssrf import CheckedTarget

SNIPPET_CHARS = 1_000
# Read a little past the snippet so a multi-byte character at the cut still decodes.
_MAX_BODY_BYTES = 4 * SNIPPET_CHARS
MAX_RETRY_AFTER_S = 24 * 3600.0
# Delay after attempt N fails; sums to ~27.6 h so a receiver down for a day still gets the event.
RETRY_SCHEDULE_S: tuple[float, ...] = (5, 5 * 60, 30 * 60, 2 * 3600, 5 * 3600, 10 * 3600, 10 * 3600)
JITTER = 0.10


@dataclass
class DeliveryResult:
    """What happened on one delivery attempt; `error` is None exactly when `ok`."""

    status_code: int | None
    latency_ms: int
    response_snippet: str
    error: str | None
    retry_after_s: float | None
    ok: bool
    gone: bool


def post_signed(
    target: CheckedTarget,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float = 15.0,
    client: httpx.Client | None = None,
) -> DeliveryResult:
    """POST `body` to the vetted addresses of `target`; network failures become a result."""
    started = time.monotonic()
    own_client = client is None
    # trust_env=False: an environment proxy would resolve the name again, undoing the vetting.
    http = client or httpx.Client(trust_env=False, follow_redirects=False)
    try:
        return _attempt(http, target, body, headers, timeout_s, started)
    finally:
        if own_client:
            http.close()


def _attempt(
    http: httpx.Client,
    target: CheckedTarget,
    body: bytes,
    headers: Mapping[str, str],
    timeout_s: float,
    started: float,
) -> DeliveryResult:
    request_headers = {k: v for k, v in headers.items() if k.lower() != "host"}
    request_headers["Host"] = _host_header(target)
    # No keep-alive: a pooled connection verified for one hostname must not carry another's event.
    request_headers["Connection"] = "close"
    extensions = {} if _is_ip(target.host) else {"sni_hostname": target.host}
    base = httpx.URL(target.url)
    error = "no addresses to connect to"
    for address in target.addresses:
        try:
            with http.stream(
                "POST",
                base.copy_with(host=address, fragment=None),
                content=body,
                headers=request_headers,
                follow_redirects=False,
                timeout=httpx.Timeout(timeout_s),
                extensions=extensions,
            ) as response:
                snippet = _read_snippet(response, started + timeout_s)
                return _result(response, snippet, started)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Only connect failures move on: the request cannot have reached the receiver.
            error = _describe(exc, timeout_s)
            continue
        except (httpx.HTTPError, TimeoutError) as exc:
            return _failure(_describe(exc, timeout_s), started)
    return _failure(error, started)


def _read_snippet(response: httpx.Response, deadline: float) -> str:
    collected = bytearray()
    for chunk in response.iter_raw():
        collected += chunk
        if len(collected) >= _MAX_BODY_BYTES:
            break
        if time.monotonic() > deadline:
            raise TimeoutError
    return bytes(collected).decode("utf-8", errors="replace")[:SNIPPET_CHARS]


def _result(response: httpx.Response, snippet: str, started: float) -> DeliveryResult:
    code = response.status_code
    ok = 200 <= code < 300
    if ok:
        error = None
    elif 300 <= code < 400:
        location = response.headers.get("location", "")
        error = f"HTTP {code}: redirect to {location or '(no location)'} not followed"
    else:
        error = f"HTTP {code}"
    return DeliveryResult(
        status_code=code,
        latency_ms=_elapsed_ms(started),
        response_snippet=snippet,
        error=error,
        retry_after_s=parse_retry_after(response.headers.get("retry-after")),
        ok=ok,
        gone=code == 410,
    )


def _failure(error: str, started: float) -> DeliveryResult:
    return DeliveryResult(
        status_code=None,
        latency_ms=_elapsed_ms(started),
        response_snippet="",
        error=error,
        retry_after_s=None,
        ok=False,
        gone=False,
    )


def _describe(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return f"timeout after {timeout_s:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"connect error: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _host_header(target: CheckedTarget) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    default = 443 if target.scheme == "https" else 80
    return host if target.port == default else f"{host}:{target.port}"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def next_attempt_delay(attempt: int, retry_after_s: float | None = None) -> float | None:
    """Seconds to wait after 1-based attempt `attempt` failed, or None to give up."""
    if attempt < 1:
        raise ValueError("attempt numbers start at 1")
    if attempt > len(RETRY_SCHEDULE_S):
        return None
    # Jitter spreads retries so receivers recovering from an outage are not hit in lockstep.
    delay = RETRY_SCHEDULE_S[attempt - 1] * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None and retry_after_s > delay:
        delay = min(retry_after_s, MAX_RETRY_AFTER_S)
    return delay
