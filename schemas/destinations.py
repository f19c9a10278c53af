"""Which notification destinations the notifier may contact.

A write-token holder chooses channel URLs, so without this rule the notifier would
probe internal services for them. Every address a host resolves to must be public:
loopback, link-local, private, shared (CGNAT), multicast, reserved and unspecified
addresses are refused unless ``CRONPIPE_NOTIFY_ALLOW_PRIVATE=1``. The check runs when a
channel is created and again before every delivery (a name may resolve differently
later: DNS rebinding), and the delivery then connects to the address that was checked.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Destination", "DestinationRefused", "check_url", "is_public_address", "resolve_destination"]


class DestinationRefused(ValueError):
    """A URL the notifier will not contact; the message says why."""


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    #: The resolved addresses, all checked.
    addresses: tuple[str, ...]


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL with a host; raises DestinationRefused."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationRefused(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise DestinationRefused("URL must be http:// or https://")
    if not parts.hostname:
        raise DestinationRefused("URL has no host")
    if parts.username or parts.password:
        raise DestinationRefused("URL must not carry credentials")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve_destination(url: str, *, allow_private: bool) -> Destination:
    """Resolve the URL's host and check every address; raises DestinationRefused."""
    scheme, host, port = check_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DestinationRefused(f"cannot resolve {host}: {exc}") from None
    addresses = tuple(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise DestinationRefused(f"{host} resolves to no address")
    if not allow_private:
        private = [a for a in addresses if not is_public_address(a)]
        if private:
            raise DestinationRefused(
                f"{host} resolves to a loopback, link-local or private address ({private[0]});"
                " set CRONPIPE_NOTIFY_ALLOW_PRIVATE=1 to allow it")
    return Destination(scheme, host, port, addresses)
