"""Every kind of internal, special or oddly spelled target must be refused before we connect."""

from __future__ import annotations

import socket

import pytest

from shared.webhooks.ssrf import UnsafeURL, check_url

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
BOTH = (PUBLIC_V4, PUBLIC_V6)
CORP = ("10.9.9.9", "10.9.9.10")
REBIND = (PUBLIC_V4, "10.0.0.5")

DNS: dict[str, list[str]] = {
    "public.example.com": list(BOTH),
    "rebind.example.com": list(REBIND),
    "private-v6.example.com": ["fd12:3456::1"],
    "mapped.example.com": ["::ffff:10.0.0.5"],
    "receiver.internal": ["10.1.2.3"],
    "box.corp.example": list(CORP),
    "localhost": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["169.254.169.254"],
}


def fake_resolver(host: str, port: int) -> list[str]:
    try:
        return DNS[host]
    except KeyError:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None


REFUSED: list[tuple[str, str]] = [
    # Scheme, credentials, shape.
    ("ftp://public.example.com/x", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("gopher://public.example.com/", "scheme"),
    ("public.example.com/hook", "scheme"),
    ("http:///no-host", "no host"),
    ("https://user:pass@public.example.com/", "credentials"),
    ("https://user@public.example.com/", "credentials"),
    ("https://public.example.com:0/", "port"),
    ("https://public.example.com:70000/", "port"),
    ("https://public.example.com\\@10.0.0.1/", "backslash"),
    ("https://exa mple.com/", "whitespace"),
    ("https://bad_host!.com/", "not a valid DNS name"),
    # Non-canonical IPv4 spellings.
    ("http://2130706433/", "non-canonical IP address"),
    ("http://0177.0.0.1/", "non-canonical IP address"),
    ("http://0x7f.1/", "non-canonical IP address"),
    ("http://0x7f000001/", "non-canonical IP address"),
    ("http://127.1/", "non-canonical IP address"),
    ("http://10.0.0.1./", "non-canonical IP address"),
    # IPv4 special ranges.
    ("http://127.0.0.1/", "loopback"),
    ("http://127.200.1.1:8080/", "loopback"),
    ("http://10.0.0.5/", "10.0.0.5 is a private address"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "carrier-grade NAT"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0.0.0.0/", "'this network'"),
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://192.0.2.10/", "documentation"),
    ("http://198.51.100.7/", "documentation"),
    ("http://203.0.113.9/", "documentation"),
    ("http://198.18.0.1/", "benchmarking"),
    # IPv6 special ranges.
    ("http://[::1]/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fc00::1]/", "unique local"),
    ("http://[fd00:ec2::254]/", "unique local"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[2001:db8::1]/", "documentation"),
    ("http://[64:ff9b::a00:5]/", "NAT64"),
    ("http://[64:ff9b:1::1]/", "NAT64"),
    ("http://[::ffff:127.0.0.1]/", "IPv4-mapped form of 127.0.0.1, a loopback address"),
    ("http://[::ffff:a9fe:a9fe]/", "IPv4-mapped form of 169.254.169.254"),
    ("http://[2002:a00:5::1]/", "6to4 address wrapping 10.0.0.5, a private address"),
    ("http://[2002:7f00:1::]/", "6to4 address wrapping 127.0.0.1"),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo"),
    ("http://[::127.0.0.1]/", "IPv4-compatible"),
    ("http://[fe80::1%25eth0]/", "zone"),
    # Internal names, and names resolving (partly) to internal addresses.
    ("http://localhost:8080/", "internal name"),
    ("http://LOCALHOST./", "internal name"),
    ("http://api.localhost/", "internal name"),
    ("http://metadata.google.internal/computeMetadata/v1/", "internal name"),
    ("https://rebind.example.com/hook", "rebind.example.com resolves to 10.0.0.5, a private"),
    ("https://private-v6.example.com/", "resolves to fd12:3456::1, a unique local"),
    ("https://mapped.example.com/", "IPv4-mapped form of 10.0.0.5"),
    ("https://receiver.internal/", "private"),
    ("https://no-such-host.example.com/", "could not resolve host no-such-host.example.com"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url(url, resolver=fake_resolver)
    assert reason in caught.value.reason


ALLOWED: list[tuple[str, tuple[str, ...], str, int, tuple[str, ...]]] = [
    # url, allow_hosts, expected host, port, addresses
    ("https://public.example.com/hook", (), "public.example.com", 443, BOTH),
    ("http://public.example.com:8080/h?q=1", (), "public.example.com", 8080, BOTH),
    ("HTTPS://Public.Example.COM./", (), "public.example.com", 443, BOTH),
    (f"https://{PUBLIC_V4}/hook", (), PUBLIC_V4, 443, (PUBLIC_V4,)),
    (f"https://[{PUBLIC_V6}]:8443/", (), PUBLIC_V6, 8443, (PUBLIC_V6,)),
    ("http://[2002:5db8:d70e::1]/", (), "2002:5db8:d70e::1", 80, ("2002:5db8:d70e::1",)),
    # Allow-list by hostname, IP and CIDR.
    ("https://receiver.internal/", ("receiver.internal",), "receiver.internal", 443, ("10.1.2.3",)),
    ("http://localhost:9000/", ("localhost",), "localhost", 9000, ("127.0.0.1", "::1")),
    ("http://127.0.0.1:9000/", ("127.0.0.1",), "127.0.0.1", 9000, ("127.0.0.1",)),
    ("http://[::1]:9000/", ("::1",), "::1", 9000, ("::1",)),
    ("https://box.corp.example/", ("10.0.0.0/8",), "box.corp.example", 443, CORP),
    ("https://rebind.example.com/", ("10.0.0.5",), "rebind.example.com", 443, REBIND),
    ("http://localhost/", ("127.0.0.0/8", "::1"), "localhost", 80, ("127.0.0.1", "::1")),
]


@pytest.mark.parametrize(("url", "allow", "host", "port", "addresses"), ALLOWED)
def test_allowed(
    url: str, allow: tuple[str, ...], host: str, port: int, addresses: tuple[str, ...]
) -> None:
    target = check_url(url, allow_hosts=allow, resolver=fake_resolver)
    assert (target.url, target.host, target.port, target.addresses) == (
        url,
        host,
        port,
        addresses,
    )
    assert target.scheme == url.split(":", 1)[0].lower()


@pytest.mark.parametrize(
    ("url", "allow", "reason"),
    [
        # An allow-listed CIDR only covers the addresses inside it.
        ("https://box.corp.example/", ("10.9.9.9",), "resolves to 10.9.9.10"),
        ("http://10.0.0.5/", ("192.168.0.0/16",), "private"),
        # Allowing one name does not allow another that resolves to the same place.
        ("https://box.corp.example/", ("receiver.internal",), "private"),
        # localhost resolving partly outside the allowed range stays refused.
        ("http://localhost/", ("127.0.0.0/8",), "internal name"),
        # Non-canonical spellings are refused even when the address itself is allowed.
        ("http://2130706433/", ("127.0.0.0/8",), "non-canonical"),
    ],
)
def test_allow_list_is_narrow(url: str, allow: tuple[str, ...], reason: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        check_url(url, allow_hosts=allow, resolver=fake_resolver)
    assert reason in caught.value.reason


def test_literal_ip_is_not_resolved() -> None:
    def refuse(host: str, port: int) -> list[str]:
        raise AssertionError(f"unexpected lookup of {host}")

    assert check_url(f"https://{PUBLIC_V4}/", resolver=refuse).addresses == (PUBLIC_V4,)


def test_resolver_receives_port_and_idna_name() -> None:
    seen: list[tuple[str, int]] = []

    def record(host: str, port: int) -> list[str]:
        seen.append((host, port))
        return [PUBLIC_V4]

    target = check_url("https://bücher.example:8443/", resolver=record)
    assert seen == [("xn--bcher-kva.example", 8443)]
    assert target.host == "xn--bcher-kva.example"


def test_unlisted_name_resolving_to_loopback_is_refused() -> None:
    # Names are not blocked by spelling alone; the resolved address decides.
    with pytest.raises(UnsafeURL, match="resolves to 127.0.0.1, a loopback"):
        check_url("http://127.0.0.1.nip.io/", resolver=lambda host, port: ["127.0.0.1"])


def test_system_resolver_failure_is_unsafe() -> None:
    # .invalid is reserved (RFC 6761) and never resolves.
    with pytest.raises(UnsafeURL, match="could not resolve host no-such-host.invalid"):
        check_url("http://no-such-host.invalid/")


def test_unsafe_url_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="scheme"):
        check_url("javascript:alert(1)")
