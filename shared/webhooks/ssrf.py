"""Vet a subscriber URL so a webhook can never be aimed at our own network."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$")
# WHATWG URL rule: a host whose last label is a number is an IPv4 address, in whatever spelling.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_BLOCKED_NAMES = frozenset({"localhost", "metadata", "metadata.google.internal", "metadata.goog"})


def _nets(*cidrs: str) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c) for c in cidrs)


# Ordered so the most specific description wins; each entry names why the range is refused.
_V4_BLOCKED: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("0.0.0.0/8"), "a 'this network' address"),
    (_nets("127.0.0.0/8"), "a loopback address"),
    (_nets("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), "a private address"),
    (_nets("100.64.0.0/10"), "a carrier-grade NAT address"),
    (_nets("169.254.0.0/16"), "a link-local address (cloud metadata lives here)"),
    (_nets("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"), "a documentation address"),
    (_nets("198.18.0.0/15"), "a benchmarking address"),
    (_nets("192.0.0.0/24", "192.88.99.0/24"), "an IETF special-purpose address"),
    (_nets("224.0.0.0/4"), "a multicast address"),
    (_nets("255.255.255.255/32"), "the broadcast address"),
    (_nets("240.0.0.0/4"), "a reserved address"),
)
_V6_BLOCKED: tuple[tuple[tuple[IPNetwork, ...], str], ...] = (
    (_nets("::/128"), "the unspecified address"),
    (_nets("::1/128"), "a loopback address"),
    (_nets("::/96"), "a deprecated IPv4-compatible address"),
    (_nets("64:ff9b::/96", "64:ff9b:1::/48"), "a NAT64 address"),
    (_nets("100::/64"), "a discard-only address"),
    (_nets("2001::/32"), "a Teredo tunnel address"),
    (_nets("2001:db8::/32", "3fff::/20"), "a documentation address"),
    (_nets("2001::/23"), "an IETF special-purpose address"),
    (_nets("fe80::/10"), "a link-local address"),
    (_nets("fec0::/10"), "a site-local address"),
    (_nets("fc00::/7"), "a unique local (private) address"),
    (_nets("ff00::/8"), "a multicast address"),
)
_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


class UnsafeURL(ValueError):
    """A webhook URL we refuse to call; `.reason` says what is wrong in one sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class CheckedTarget:
    """A vetted URL and the addresses it may be reached at (connect to these, not to DNS)."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]


def unsafe_reason(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address, or None when it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _V6_MAPPED and ip.ipv4_mapped is not None:
            inner = unsafe_reason(ip.ipv4_mapped)
            return f"an IPv4-mapped form of {ip.ipv4_mapped}, {inner}" if inner else None
        if ip.sixtofour is not None:
            inner = unsafe_reason(ip.sixtofour)
            return f"a 6to4 address wrapping {ip.sixtofour}, {inner}" if inner else None
        table = _V6_BLOCKED
    else:
        table = _V4_BLOCKED
    for networks, description in table:
        if any(ip in net for net in networks):
            return description
    if isinstance(ip, ipaddress.IPv6Address) and ip not in _V6_GLOBAL_UNICAST:
        return "outside the IPv6 global unicast range"
    if not ip.is_global:
        # Defence in depth: the standard library knows of ranges our table may miss.
        return "not a globally routable address"
    return None


def check_url(
    url: str, allow_hosts: Collection[str] = (), resolver: Resolver | None = None
) -> CheckedTarget:
    """Vet `url` and resolve its host; raise UnsafeURL unless every address is safe to call."""
    scheme, host, port, literal = _parse(url)
    allowed_names, allowed_nets = _parse_allow_list(allow_hosts)
    name_allowed = host in allowed_names
    blocked_name = literal is None and _is_blocked_name(host)
    if blocked_name and not name_allowed and not allowed_nets:
        raise UnsafeURL(f"host {host} is an internal name")

    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        addresses = _resolve(host, port, resolver or _getaddrinfo)

    if not name_allowed:
        in_allowed = [any(ip in net for net in allowed_nets) for ip in addresses]
        if blocked_name and not all(in_allowed):
            raise UnsafeURL(f"host {host} is an internal name")
        for ip, allowed in zip(addresses, in_allowed, strict=True):
            reason = None if allowed else unsafe_reason(ip)
            if reason is None:
                continue
            if literal is not None:
                raise UnsafeURL(f"host {ip} is {reason}")
            raise UnsafeURL(f"{host} resolves to {ip}, {reason}")
    return CheckedTarget(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        addresses=tuple(str(ip) for ip in addresses),
    )


def _parse(url: str) -> tuple[str, str, int, IPAddress | None]:
    """Split `url` into scheme, normalised host, port and the host's IP when it is a literal."""
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url) or "\\" in url:
        raise UnsafeURL("URL contains whitespace, control characters or backslashes")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise UnsafeURL(f"URL cannot be parsed: {exc}") from None
    try:
        port = parts.port
    except ValueError:
        raise UnsafeURL("port must be a number in the range 1-65535") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeURL(f"scheme {scheme or '(none)'!r} is not allowed; use http or https")
    if "@" in parts.netloc:
        raise UnsafeURL("URL must not contain credentials (user:pass@)")
    raw_host = parts.hostname
    if not raw_host:
        raise UnsafeURL("URL has no host")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise UnsafeURL("port must be a number in the range 1-65535")

    if parts.netloc.startswith("["):
        try:
            v6 = ipaddress.IPv6Address(raw_host)
        except ValueError:
            raise UnsafeURL(f"host [{raw_host}] is not a valid IPv6 address") from None
        if v6.scope_id:
            raise UnsafeURL("IPv6 zone identifiers are not allowed")
        return scheme, str(v6), port, v6

    host = raw_host[:-1] if raw_host.endswith(".") else raw_host
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            v4 = ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeURL(f"host {raw_host} is a non-canonical IP address") from None
        if raw_host != host:
            raise UnsafeURL(f"host {raw_host} is a non-canonical IP address")
        return scheme, str(v4), port, v4
    return scheme, _normalise_name(host), port, None


def _normalise_name(host: str) -> str:
    """Return the ASCII (IDNA) form of a DNS name, or raise if it is not one."""
    try:
        ascii_host = host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise UnsafeURL(f"host {host!r} is not a valid DNS name") from None
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in ascii_host.split(".")):
        raise UnsafeURL(f"host {host!r} is not a valid DNS name")
    return ascii_host


def _is_blocked_name(host: str) -> bool:
    return host in _BLOCKED_NAMES or host.endswith(".localhost")


def _parse_allow_list(entries: Collection[str]) -> tuple[set[str], list[IPNetwork]]:
    names: set[str] = set()
    nets: list[IPNetwork] = []
    for entry in entries:
        cleaned = entry.strip().lower().strip("[]")
        if not cleaned:
            continue
        try:
            nets.append(ipaddress.ip_network(cleaned, strict=False))
        except ValueError:
            names.add(cleaned.rstrip("."))
    return names, nets


def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    try:
        raw = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"could not resolve host {host}: {exc}") from None
    if not raw:
        raise UnsafeURL(f"could not resolve host {host}: no addresses")
    addresses: list[IPAddress] = []
    for text in raw:
        try:
            ip = ipaddress.ip_address(text)
        except ValueError:
            raise UnsafeURL(f"could not resolve host {host}: bad address {text!r}") from None
        if ip not in addresses:
            addresses.append(ip)
    return addresses


def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]
