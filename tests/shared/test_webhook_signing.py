"""Signatures must interoperate with the official Standard Webhooks verifier."""

from __future__ import annotations

import base64
import json
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.webhooks.signing import (
    InvalidSignature,
    build_headers,
    generate_secret,
    sign,
    signature_header,
    verify,
)

BODY = json.dumps({"type": "job.completed", "data": {"job_id": "j_1"}}).encode()


def test_generate_secret_is_prefixed_32_random_bytes() -> None:
    first, second = generate_secret(), generate_secret()
    assert first.startswith("whsec_")
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert first != second


def test_sign_matches_spec_test_vector() -> None:
    # Test vector published with the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    got = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
    assert got == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_headers_verify_with_official_library() -> None:
    secret = generate_secret()
    headers = build_headers([secret], "msg_1", BODY)
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"] == "llm-jobs-webhooks/1"
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    verify(secret, headers, BODY)


@pytest.mark.parametrize("known", [0, 1])
def test_rotation_either_secret_verifies(known: int) -> None:
    old, new = generate_secret(), generate_secret()
    headers = build_headers([old, new], "msg_rot", BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    only_one = [old, new][known]
    Webhook(only_one).verify(BODY, headers)
    verify(only_one, headers, BODY)


def test_unknown_secret_fails_both_verifiers() -> None:
    headers = build_headers([generate_secret(), generate_secret()], "msg_x", BODY)
    stranger = generate_secret()
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(BODY, headers)
    with pytest.raises(InvalidSignature):
        verify(stranger, headers, BODY)


def test_tampered_body_fails() -> None:
    secret = generate_secret()
    headers = build_headers([secret], "msg_2", BODY)
    tampered = BODY.replace(b"j_1", b"j_2")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(tampered, headers)
    with pytest.raises(InvalidSignature):
        verify(secret, headers, tampered)


def test_tampered_timestamp_fails() -> None:
    secret = generate_secret()
    headers = build_headers([secret], "msg_3", BODY)
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, headers)
    with pytest.raises(InvalidSignature):
        verify(secret, headers, BODY)


def test_tampered_msg_id_fails() -> None:
    secret = generate_secret()
    headers = build_headers([secret], "msg_4", BODY)
    headers["webhook-id"] = "msg_5"
    with pytest.raises(InvalidSignature):
        verify(secret, headers, BODY)


def test_verify_rejects_old_and_future_timestamps() -> None:
    secret = generate_secret()
    now = int(time.time())
    stale = build_headers([secret], "msg_old", BODY, timestamp=now - 301)
    with pytest.raises(InvalidSignature, match="too old"):
        verify(secret, stale, BODY, now=now)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, stale)
    future = build_headers([secret], "msg_new", BODY, timestamp=now + 301)
    with pytest.raises(InvalidSignature, match="too new"):
        verify(secret, future, BODY, now=now)
    edge = build_headers([secret], "msg_edge", BODY, timestamp=now - 300)
    verify(secret, edge, BODY, now=now)


def test_verify_accepts_header_names_in_any_case() -> None:
    secret = generate_secret()
    headers = {k.title(): v for k, v in build_headers([secret], "msg_6", BODY).items()}
    verify(secret, headers, BODY)


def test_verify_requires_headers() -> None:
    secret = generate_secret()
    headers = build_headers([secret], "msg_7", BODY)
    del headers["webhook-signature"]
    with pytest.raises(InvalidSignature, match="missing"):
        verify(secret, headers, BODY)


def test_signature_header_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one"):
        signature_header([], "msg", 1, BODY)


def test_bad_secret_is_rejected() -> None:
    with pytest.raises(ValueError, match="base64"):
        sign("whsec_not*base64!", "msg", 1, BODY)
