"""Webhook signatures per the Standard Webhooks specification (HMAC-SHA256, `v1,` scheme)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence

SECRET_PREFIX = "whsec_"
USER_AGENT = "llm-jobs-webhooks/1"


class InvalidSignature(Exception):
    """The webhook headers do not prove the body came from a holder of the secret."""


def generate_secret() -> str:
    """Return a new signing secret: `whsec_` and base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode("ascii")


def _key(secret: str) -> bytes:
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Restore padding so secrets stored unpadded still decode, as the reference library does.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except binascii.Error:
        raise ValueError("webhook secret is not valid base64") from None
    if not key:
        raise ValueError("webhook secret is empty")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """Return `v1,<base64 HMAC-SHA256>` over `{msg_id}.{timestamp}.{body}`."""
    payload = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), payload, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def signature_header(secrets: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """Return one signature per secret, space-separated, so old and new keys overlap."""
    if not secrets:
        raise ValueError("at least one webhook secret is required")
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)


def build_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Return the full header set for one signed delivery of `body`."""
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header(secrets, msg_id, ts, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance_s: int = 300,
    now: int | None = None,
) -> None:
    """Raise InvalidSignature unless `headers` carry a fresh, valid signature of `body`."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    ts_text = lowered.get("webhook-timestamp")
    sig_text = lowered.get("webhook-signature")
    if not (msg_id and ts_text and sig_text):
        raise InvalidSignature("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        timestamp = int(ts_text)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    current = int(time.time()) if now is None else now
    if timestamp < current - tolerance_s:
        raise InvalidSignature("message timestamp too old")
    if timestamp > current + tolerance_s:
        raise InvalidSignature("message timestamp too new")

    expected = sign(secret, msg_id, timestamp, body).encode()
    # Check every candidate without early exit so timing reveals nothing about which matched.
    matched = False
    for candidate in sig_text.split(" "):
        if candidate.startswith("v1,"):
            matched |= hmac.compare_digest(expected, candidate.encode())
    if not matched:
        raise InvalidSignature("no matching signature found")
