"""The PROXY protocol header (HAProxy's `send-proxy` / `send-proxy-v2`) for tcp mode.

A tcp-mode backend sees the balancer's address, not the client's. With
`proxy_protocol: v1` or `v2`, each backend connection starts with a header
that names the client's address and port and the address it connected to
(https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt). The backend
must expect it (nginx `listen ... proxy_protocol`, HAProxy `accept-proxy`).
Health checks do not send it.
"""

from __future__ import annotations

import ipaddress
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_header(version: str, src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """The header for a connection from `src` to `dst`, each (address, port).

    An address pair of mixed or unknown families gets the protocol's UNKNOWN form
    (v1) or LOCAL command (v2): the backend then uses the real connection's address.
    """
    s_ip, d_ip = _address(src[0]), _address(dst[0])
    known = s_ip is not None and d_ip is not None and s_ip.version == d_ip.version
    if version == "v1":
        if not known or s_ip is None or d_ip is None:
            return b"PROXY UNKNOWN\r\n"
        family = "TCP4" if s_ip.version == 4 else "TCP6"
        return f"PROXY {family} {s_ip} {d_ip} {src[1]} {dst[1]}\r\n".encode("ascii")
    if version == "v2":
        if not known or s_ip is None or d_ip is None:
            return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)  # LOCAL
        fam = 0x11 if s_ip.version == 4 else 0x21  # TCP over IPv4 / IPv6
        body = s_ip.packed + d_ip.packed + struct.pack("!HH", src[1], dst[1])
        return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body
    raise ValueError(f"PROXY protocol version {version!r}: give v1 or v2")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None
