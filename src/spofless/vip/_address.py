"""The address itself: add, remove and look up with iproute2; gratuitous ARP on a raw socket.

Linux only. Adding and removing need CAP_NET_ADMIN, sending ARP CAP_NET_RAW
(root, or a namespace of the lab). Every call is bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import fcntl
import ipaddress
import json
import logging
import socket
import struct
import subprocess

from spofless.vip._errors import VipError

logger = logging.getLogger(__name__)

IP_TIMEOUT = 2.0  # one `ip` command; it answers in milliseconds
SIOCGIFHWADDR = 0x8927
ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6


def find_interface(address: ipaddress.IPv4Interface) -> str:
    """The interface holding an IPv4 network that contains `address` (not the VIP itself)."""
    for name, iface in _addresses():
        if iface.ip != address.ip and address.ip in iface.network and name != "lo":
            return name
    raise VipError(
        f"no interface here has a network containing {address.ip}; set vip.interface "
        "or choose an address in one of this host's networks"
    )


def _addresses() -> list[tuple[str, ipaddress.IPv4Interface]]:
    proc = subprocess.run(
        ["ip", "-j", "-4", "addr", "show"], capture_output=True, text=True, timeout=IP_TIMEOUT
    )
    if proc.returncode != 0:
        raise VipError(f"ip addr show failed: {proc.stderr.strip()}")
    out = []
    for link in json.loads(proc.stdout or "[]"):
        for a in link.get("addr_info", []):
            out.append((link["ifname"], ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")))
    return out


def present(address: ipaddress.IPv4Interface, interface: str) -> bool:
    """Whether the address is on the interface now."""
    return any(n == interface and i.ip == address.ip for n, i in _addresses())


def _ip_argv(verb: str, address: ipaddress.IPv4Interface, interface: str) -> list[str]:
    return ["ip", "addr", verb, address.with_prefixlen, "dev", interface]


async def add(address: ipaddress.IPv4Interface, interface: str) -> None:
    """Add the address (already there is fine)."""
    await _run(_ip_argv("add", address, interface), ok_if="File exists")


async def remove(address: ipaddress.IPv4Interface, interface: str) -> None:
    """Remove the address (already gone is fine)."""
    await _run(_ip_argv("del", address, interface), ok_if="Cannot assign requested address")


def remove_sync(address: ipaddress.IPv4Interface, interface: str) -> bool:
    """Remove the address without an event loop; True when it was there."""
    proc = subprocess.run(
        _ip_argv("del", address, interface), capture_output=True, text=True, timeout=IP_TIMEOUT
    )
    return proc.returncode == 0


async def _run(argv: list[str], ok_if: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        async with asyncio.timeout(IP_TIMEOUT):
            _, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise VipError(f"{' '.join(argv)}: no answer in {IP_TIMEOUT:g}s") from None
    text = err.decode(errors="replace").strip()
    if proc.returncode != 0 and ok_if not in text:
        raise VipError(f"{' '.join(argv)} failed: {text}")


def hardware_address(interface: str) -> bytes:
    """The interface's MAC address (6 bytes)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("256s", interface.encode()[:15])
        try:
            info = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, req)
        except OSError as exc:
            raise VipError(f"no interface {interface!r}: {exc}") from None
    return info[18:24]


def garp_frames(mac: bytes, ip: ipaddress.IPv4Address) -> list[bytes]:
    """A gratuitous ARP request and reply for ip at mac (what `arping -U` and `-A` send):
    every neighbour that knows ip updates its entry to mac at once."""
    ip_b = ip.packed
    frames = []
    for op, target_mac in ((1, b"\0" * 6), (2, BROADCAST)):
        eth = BROADCAST + mac + struct.pack("!H", ETH_P_ARP)
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ip_b + target_mac + ip_b
        frames.append(eth + arp)
    return frames


def send_garp(interface: str, ip: ipaddress.IPv4Address) -> None:
    """Send one gratuitous ARP request and reply on the interface."""
    frames = garp_frames(hardware_address(interface), ip)
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((interface, 0))
        for frame in frames:
            s.send(frame)
