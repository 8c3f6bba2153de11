"""The address itself: add, remove and look up over netlink; gratuitous ARP on a raw socket.

Linux only. Adding and removing need CAP_NET_ADMIN, sending ARP CAP_NET_RAW
(root, or a namespace of the lab). Every call is bounded by a timeout.
"""

from __future__ import annotations

import fcntl
import ipaddress
import logging
import socket
import struct

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from spofless.vip._errors import VipError

logger = logging.getLogger(__name__)

SIOCGIFHWADDR = 0x8927
ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
EEXIST, EADDRNOTAVAIL = 17, 99


class Addresses:
    """This network namespace's IPv4 addresses over one netlink socket (pyroute2).

    Adding and removing is one netlink request, well under a millisecond, in this
    process: no `ip` child whose start a loaded machine can delay by hundreds of
    milliseconds, which the takeover margin would then have to cover.
    """

    def __init__(self) -> None:
        self._ip = IPRoute()

    def close(self) -> None:
        self._ip.close()

    def all(self) -> list[tuple[str, ipaddress.IPv4Interface]]:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in self._ip.get_links()}
        return [
            (
                names.get(a["index"], "?"),
                ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"),
            )
            for a in self._ip.get_addr(family=socket.AF_INET)
        ]

    def find_interface(self, address: ipaddress.IPv4Interface) -> str:
        """The interface holding a network that contains `address` (not the VIP itself)."""
        for name, iface in self.all():
            if iface.ip != address.ip and address.ip in iface.network and name != "lo":
                return name
        raise VipError(
            f"no interface here has a network containing {address.ip}; set vip.interface "
            "or choose an address in one of this host's networks"
        )

    def present(self, address: ipaddress.IPv4Interface, interface: str) -> bool:
        """Whether the address is on the interface now."""
        return any(n == interface and i.ip == address.ip for n, i in self.all())

    def _index(self, interface: str) -> int:
        found = self._ip.link_lookup(ifname=interface)
        if not found:
            raise VipError(f"no interface {interface!r} here")
        return int(found[0])

    def add(self, address: ipaddress.IPv4Interface, interface: str) -> None:
        """Add the address (already there is fine)."""
        try:
            self._ip.addr(
                "add", index=self._index(interface), address=str(address.ip),
                prefixlen=address.network.prefixlen,
            )  # fmt: skip
        except NetlinkError as exc:
            if exc.code != EEXIST:
                raise VipError(f"cannot add {address} on {interface}: {exc}") from None

    def remove(self, address: ipaddress.IPv4Interface, interface: str) -> bool:
        """Remove the address; True when it was there."""
        try:
            self._ip.addr(
                "del", index=self._index(interface), address=str(address.ip),
                prefixlen=address.network.prefixlen,
            )  # fmt: skip
        except NetlinkError as exc:
            if exc.code == EADDRNOTAVAIL:
                return False
            raise VipError(f"cannot remove {address} from {interface}: {exc}") from None
        return True


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
