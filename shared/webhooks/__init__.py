"""Signing, SSRF vetting and delivery primitives for outbound job webhooks."""

from shared.retry_after import parse_retry_after
from shared.webhooks.delivery import (
    DeliveryResult,
    next_attempt_delay,
    post_signed,
)
from shared.webhooks.signing import (
    InvalidSignature,
    build_headers,
    generate_secret,
    sign,
    signature_header,
    verify,
)
from shared.webhooks.ssrf import CheckedTarget, UnsafeURL, check_url

__all__ = [
    "CheckedTarget",
    "DeliveryResult",
    "InvalidSignature",
    "UnsafeURL",
    "build_headers",
    "check_url",
    "generate_secret",
    "next_attempt_delay",
    "parse_retry_after",
    "post_signed",
    "sign",
    "signature_header",
    "verify",
]
