"""Outbound requests to user-given URLs must not reach private networks (SSRF).

A completion callback URL is chosen by the user, but the CPU worker POSTs to it from inside
the deployment: without this check it could reach the cloud metadata endpoint, Postgres or the
Temporal frontend. Hosts are resolved and every address must be globally routable, unless the
operator allows private hosts (a receiver on the same network, or tests).
"""

import ipaddress
import socket
from urllib.parse import urlsplit


def non_public_address(url: str) -> str | None:
    """The first address `url`'s host resolves to that is not globally routable, else None.

    A host that does not resolve is not refused here: the request itself will fail.
    """
    host = urlsplit(url).hostname
    if not host:
        return None
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return None
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if not address.is_global:
            return str(address)
    return None
