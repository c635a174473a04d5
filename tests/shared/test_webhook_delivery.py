"""post_signed against a real local HTTP(S) receiver, plus the retry schedule."""

from __future__ import annotations

import datetime as dt
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.webhooks.delivery import (
    MAX_RETRY_AFTER_S,
    RETRY_SCHEDULE_S,
    next_attempt_delay,
    parse_retry_after,
    post_signed,
)
from shared.webhooks.signing import build_headers, generate_secret
from shared.webhooks.ssrf import CheckedTarget, check_url

SECRET = generate_secret()
BODY = json.dumps({"type": "job.completed", "data": {"job_id": "j_42"}}).encode()
LOCAL = ("127.0.0.1",)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    server: ThreadingHTTPServer
    requests: list[Seen] = field(default_factory=list)
    sni_names: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    @property
    def port(self) -> int:
        return self.server.server_address[1]


def _handler(receiver_ref: list[Receiver]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_POST(self) -> None:
            receiver = receiver_ref[0]
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                Webhook(SECRET).verify(body, headers)
                verified = True
            except WebhookVerificationError:
                verified = False
            receiver.requests.append(Seen("POST", self.path, headers, body, verified))
            if self.path == "/sleep":
                receiver.release.wait(10)
            status, extra, payload = ROUTES.get(self.path, (404, {}, b"no such route"))
            if self.path == "/hook" and not verified:
                status, payload = 401, b"bad signature"
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler


ROUTES: dict[str, tuple[int, dict[str, str], bytes]] = {
    "/hook": (200, {}, b"received"),
    "/redirect": (302, {"location": "/hook"}, b""),
    "/gone": (410, {}, b"subscription deleted"),
    "/busy": (429, {"retry-after": "120"}, b"slow down"),
    "/big": (500, {}, "é".encode() * 3000),
    "/sleep": (200, {}, b"too late"),
}


def _start(host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    ref: list[Receiver] = []
    server_cls = ThreadingHTTPServer
    if ":" in host:

        class V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_cls = V6Server
    server = server_cls((host, 0), _handler(ref))
    server.daemon_threads = True
    receiver = Receiver(server)
    ref.append(receiver)
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: receiver.sni_names.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    yield from _start()


def _target(url: str, addresses: list[str], allow: tuple[str, ...] = LOCAL) -> CheckedTarget:
    return check_url(url, allow_hosts=allow, resolver=lambda host, port: addresses)


def test_delivers_signed_body_to_vetted_address_with_original_host(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def spy(host: object, *args: object, **kwargs: object) -> object:
        lookups.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)  # type: ignore[arg-type]

    target = _target(f"http://hooks.example.test:{receiver.port}/hook", ["127.0.0.1"])
    monkeypatch.setattr(socket, "getaddrinfo", spy)
    result = post_signed(target, BODY, build_headers([SECRET], "msg_1", BODY))

    assert result.ok, result
    assert (result.status_code, result.error, result.gone) == (200, None, False)
    assert result.response_snippet == "received"
    assert result.latency_ms >= 0
    [seen] = receiver.requests
    assert seen.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert seen.body == BODY
    assert seen.verified
    assert seen.headers["user-agent"] == "llm-jobs-webhooks/1"
    assert seen.headers["content-type"] == "application/json"
    assert "hooks.example.test" not in lookups


def test_wrong_secret_is_rejected_by_receiver(receiver: Receiver) -> None:
    target = _target(f"http://hooks.example.test:{receiver.port}/hook", ["127.0.0.1"])
    result = post_signed(target, BODY, build_headers([generate_secret()], "msg_2", BODY))
    assert not result.ok
    assert (result.status_code, result.error) == (401, "HTTP 401")
    assert not receiver.requests[0].verified


def test_tries_next_address_after_connect_error(receiver: Receiver) -> None:
    # 127.0.0.2 is loopback too, but nothing listens there on this port.
    target = _target(
        f"http://hooks.example.test:{receiver.port}/hook",
        ["127.0.0.2", "127.0.0.1"],
        allow=("127.0.0.0/8",),
    )
    result = post_signed(target, BODY, build_headers([SECRET], "msg_3", BODY))
    assert result.ok, result
    assert len(receiver.requests) == 1


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    target = _target(f"http://127.0.0.1:{receiver.port}/redirect", [])
    result = post_signed(target, BODY, build_headers([SECRET], "msg_4", BODY))
    assert not result.ok
    assert result.status_code == 302
    assert result.error is not None
    assert "redirect to /hook not followed" in result.error
    assert [r.path for r in receiver.requests] == ["/redirect"]


def test_gone_sets_gone(receiver: Receiver) -> None:
    target = _target(f"http://127.0.0.1:{receiver.port}/gone", [])
    result = post_signed(target, BODY, build_headers([SECRET], "msg_5", BODY))
    assert (result.ok, result.gone, result.status_code) == (False, True, 410)
    assert result.response_snippet == "subscription deleted"


def test_too_many_requests_parses_retry_after(receiver: Receiver) -> None:
    target = _target(f"http://127.0.0.1:{receiver.port}/busy", [])
    result = post_signed(target, BODY, build_headers([SECRET], "msg_6", BODY))
    assert (result.ok, result.status_code, result.retry_after_s) == (False, 429, 120.0)


def test_snippet_is_capped_at_1000_characters(receiver: Receiver) -> None:
    target = _target(f"http://127.0.0.1:{receiver.port}/big", [])
    result = post_signed(target, BODY, build_headers([SECRET], "msg_7", BODY))
    assert result.status_code == 500
    assert result.response_snippet == "é" * 1000


def test_closed_port_gives_connect_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = _target(f"http://127.0.0.1:{port}/hook", [])
    result = post_signed(target, BODY, build_headers([SECRET], "msg_8", BODY))
    assert (result.ok, result.status_code) == (False, None)
    assert result.error is not None
    assert result.error.startswith("connect error: ")


def test_slow_receiver_times_out(receiver: Receiver) -> None:
    target = _target(f"http://127.0.0.1:{receiver.port}/sleep", [])
    result = post_signed(target, BODY, build_headers([SECRET], "msg_9", BODY), timeout_s=0.3)
    assert (result.ok, result.status_code) == (False, None)
    assert result.error == "timeout after 0.3 s"


def test_ipv6_literal_address_is_bracketed() -> None:
    try:
        receivers = _start("::1")
        receiver = next(receivers)
    except OSError:
        pytest.skip("IPv6 loopback is not available here")
    try:
        target = _target(f"http://hooks.example.test:{receiver.port}/hook", ["::1"], ("::1",))
        result = post_signed(target, BODY, build_headers([SECRET], "msg_10", BODY))
        assert result.ok, result
        assert receiver.requests[0].headers["host"] == f"hooks.example.test:{receiver.port}"
    finally:
        receivers.close()


# HTTPS: the certificate names only the hostname, so success proves SNI and verification use it.


@dataclass
class Pki:
    client_ctx: ssl.SSLContext
    server_ctx: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(cn: str) -> object:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("test CA"))
        .issuer_name(name("test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(name("hooks.example.test"))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("hooks.example.test")]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    folder: Path = tmp_path_factory.mktemp("pki")
    pem = serialization.Encoding.PEM
    (folder / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (folder / "leaf.pem").write_bytes(leaf_cert.public_bytes(pem))
    (folder / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(folder / "leaf.pem", folder / "leaf.key")
    client_ctx = ssl.create_default_context(cafile=str(folder / "ca.pem"))
    return Pki(client_ctx=client_ctx, server_ctx=server_ctx)


@pytest.fixture
def tls_receiver(pki: Pki) -> Iterator[Receiver]:
    yield from _start(tls=pki.server_ctx)


def test_https_uses_hostname_for_sni_and_certificate(pki: Pki, tls_receiver: Receiver) -> None:
    target = _target(f"https://hooks.example.test:{tls_receiver.port}/hook", ["127.0.0.1"])
    with httpx.Client(verify=pki.client_ctx, trust_env=False) as client:
        result = post_signed(target, BODY, build_headers([SECRET], "msg_11", BODY), client=client)
    assert result.ok, result
    assert tls_receiver.sni_names == ["hooks.example.test"]
    assert tls_receiver.requests[0].headers["host"] == f"hooks.example.test:{tls_receiver.port}"
    assert tls_receiver.requests[0].verified


def test_https_certificate_for_another_name_fails(pki: Pki, tls_receiver: Receiver) -> None:
    target = _target(f"https://other.example.test:{tls_receiver.port}/hook", ["127.0.0.1"])
    with httpx.Client(verify=pki.client_ctx, trust_env=False) as client:
        result = post_signed(target, BODY, build_headers([SECRET], "msg_12", BODY), client=client)
    assert not result.ok
    assert result.error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in result.error
    assert tls_receiver.requests == []


# Retry-After parsing and the retry schedule.


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("120", 120.0),
        ("Wed, 01 Jan 2025 00:02:00 GMT", 120.0),
        ("Tue, 31 Dec 2024 23:00:00 GMT", 0.0),
        ("soon", None),
        ("-5", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    assert parse_retry_after(header, now=now) == expected


def test_schedule_covers_at_least_a_day_then_gives_up() -> None:
    delays = [next_attempt_delay(n) for n in range(1, len(RETRY_SCHEDULE_S) + 1)]
    assert all(d is not None for d in delays)
    assert sum(RETRY_SCHEDULE_S) * 0.9 >= 24 * 3600
    assert next_attempt_delay(len(RETRY_SCHEDULE_S) + 1) is None
    assert [round(s) for s in RETRY_SCHEDULE_S] == [5, 300, 1800, 7200, 18000, 36000, 36000]


@pytest.mark.parametrize("attempt", range(1, 8))
def test_jitter_stays_within_ten_percent(attempt: int) -> None:
    base = RETRY_SCHEDULE_S[attempt - 1]
    draws = {next_attempt_delay(attempt) for _ in range(200)}
    assert all(d is not None and 0.9 * base <= d <= 1.1 * base for d in draws)
    assert len(draws) > 1


def test_retry_after_honoured_when_larger_and_capped() -> None:
    assert next_attempt_delay(1, retry_after_s=600) == 600
    assert next_attempt_delay(1, retry_after_s=7 * 86400) == MAX_RETRY_AFTER_S
    smaller = next_attempt_delay(4, retry_after_s=10)
    assert smaller is not None
    assert smaller >= 0.9 * 7200
    assert next_attempt_delay(8, retry_after_s=60) is None


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="start at 1"):
        next_attempt_delay(0)
