"""The PROXY protocol header (v1 text, v2 binary), checked byte for byte."""

from __future__ import annotations

import struct

import pytest

from spofless.lb._proxy_protocol import V2_SIGNATURE, proxy_header


def test_v1_ipv4_and_ipv6() -> None:
    assert (
        proxy_header("v1", ("192.0.2.7", 40000), ("10.0.0.1", 5432))
        == b"PROXY TCP4 192.0.2.7 10.0.0.1 40000 5432\r\n"
    )
    assert (
        proxy_header("v1", ("2001:db8::7", 1), ("2001:db8::1", 443))
        == b"PROXY TCP6 2001:db8::7 2001:db8::1 1 443\r\n"
    )


def test_v2_ipv4_layout() -> None:
    h = proxy_header("v2", ("192.0.2.7", 40000), ("10.0.0.1", 5432))
    assert h[:12] == V2_SIGNATURE
    assert h[12] == 0x21  # version 2, PROXY command
    assert h[13] == 0x11  # TCP over IPv4
    assert struct.unpack("!H", h[14:16]) == (12,)
    assert h[16:20] == bytes([192, 0, 2, 7]) and h[20:24] == bytes([10, 0, 0, 1])
    assert struct.unpack("!HH", h[24:28]) == (40000, 5432)
    assert len(h) == 28


def test_v2_ipv6_length() -> None:
    h = proxy_header("v2", ("2001:db8::7", 1), ("2001:db8::1", 443))
    assert h[13] == 0x21 and struct.unpack("!H", h[14:16]) == (36,) and len(h) == 16 + 36


def test_mixed_or_unknown_addresses_fall_back() -> None:
    """The backend then uses the connection's own addresses (UNKNOWN / LOCAL)."""
    assert proxy_header("v1", ("192.0.2.7", 1), ("2001:db8::1", 2)) == b"PROXY UNKNOWN\r\n"
    assert proxy_header("v1", ("", 0), ("10.0.0.1", 2)) == b"PROXY UNKNOWN\r\n"
    local = proxy_header("v2", ("/tmp/sock", 0), ("10.0.0.1", 2))
    assert local == V2_SIGNATURE + bytes([0x20, 0x00, 0x00, 0x00])


def test_unknown_version_is_refused() -> None:
    with pytest.raises(ValueError, match="v1 or v2"):
        proxy_header("v3", ("192.0.2.7", 1), ("10.0.0.1", 2))
