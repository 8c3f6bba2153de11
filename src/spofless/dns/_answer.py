"""Answers: a pure function of (query, client address, health view, zone). No sockets here.

What a query gets, in order:

- a datagram shorter than a DNS header, or one with QR=1 (a response): nothing;
- a message that does not parse, or with other than one question: FORMERR;
- an opcode other than QUERY: NOTIMP; an EDNS version above 0: BADVERS;
- a name outside the zone, a class other than IN, a zone transfer: REFUSED
  (no recursion is offered, RA is always 0);
- an unknown name inside the zone: NXDOMAIN, the SOA in the authority section;
- a known name without data of that type: NOERROR, no answer, the SOA (NODATA);
- ANY: one synthesized HINFO "RFC8482" (RFC 8482), never the whole name;
- A/AAAA of a service name: the addresses of the instances of its component
  whose health check passes, with the zone's TTL: those in the client's region
  when any of them passes, else those that pass anywhere, else every instance
  (fail open: a DNS that answers nothing takes the service down itself); for a
  load balancer with one VIP per region, the members are those VIPs, one per region;
- SOA and NS at the apex, A/AAAA of the in-zone name servers.

The client's region is found from the EDNS client subnet when the query carries
one with a non-zero source prefix, else from the source address; the answer then
echoes the option with the scope it is valid for (RFC 7871).

A UDP answer never exceeds 512 bytes, or the EDNS buffer size the query
advertises (at most `max_udp_payload`): a larger one is sent as header and
question only with TC=1, so the client asks again over TCP. An answer is thus
never much larger than its query allows, which is what makes a server useless
for amplification.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping, Sequence

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from spofless.dns._settings import DnsSettings, IPAddress, IPNetwork, Member
from spofless.health import Status

HEADER_SIZE = 12
CLASSIC_UDP_LIMIT = 512  # RFC 1035: without EDNS, a UDP message holds 512 bytes
TCP_LIMIT = 65535
NS_TTL = 3600  # the name servers do not change with health
HealthView = Mapping[str, Status]  # instance name (`lb/0`) -> status

_IN = dns.rdataclass.IN
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_RFC8482 = dns.rdata.from_text(_IN, dns.rdatatype.HINFO, '"RFC8482" ""')


class Zone:
    """A DNS instance's settings prepared for answering: names parsed, static records built."""

    def __init__(self, settings: DnsSettings) -> None:
        self.settings = settings
        self.origin = dns.name.from_text(settings.zone)
        self.ttl = settings.ttl
        self.max_udp_payload = settings.max_udp_payload
        ns_names = [dns.name.from_text(ns.name) for ns in settings.nameservers]
        first_ns = ns_names[0] if ns_names else self.origin
        # Negative answers are cached for min(SOA TTL, MINIMUM) (RFC 2308): the zone's TTL.
        self.soa = dns.rrset.RRset(self.origin, _IN, dns.rdatatype.SOA)
        self.soa.update_ttl(NS_TTL)
        # Refresh, retry and expire matter to secondaries only, which spofless does not use.
        soa = f"{first_ns} hostmaster.{settings.zone} {settings.soa_serial} 3600 600 86400 "
        self.soa.add(dns.rdata.from_text(_IN, dns.rdatatype.SOA, soa + str(settings.ttl)))
        self.static: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        self._put(self.soa)
        if ns_names:
            ns = dns.rrset.RRset(self.origin, _IN, dns.rdatatype.NS)
            ns.update_ttl(NS_TTL)
            for name in ns_names:
                ns.add(dns.rdata.from_text(_IN, dns.rdatatype.NS, name.to_text()))
            self._put(ns)
        self.glue: list[dns.rrset.RRset] = []
        for server, name in zip(settings.nameservers, ns_names, strict=True):
            for address in server.addresses:
                rrset = _address_rrset(name, [address], NS_TTL)
                self._put(rrset)
                self.glue.append(rrset)
        self.dynamic: dict[dns.name.Name, tuple[Member, ...]] = {}
        for owner, component in settings.records.items():
            name = self.origin if owner == "@" else dns.name.from_text(owner, self.origin)
            self.dynamic[name] = (
                settings.pools[component].members if component in settings.pools else ()
            )
        # Names that exist, with every name between them and the apex (empty non-terminals
        # answer NODATA, not NXDOMAIN: RFC 8020).
        self.existing: set[dns.name.Name] = set()
        for name in [*self.static, *self.dynamic]:
            while name != self.origin and name.is_subdomain(self.origin):
                self.existing.add(name)
                name = name.parent()
        self.existing.add(self.origin)
        # Longest prefix first, so the most specific region's network wins.
        self.networks: list[tuple[IPNetwork, str]] = sorted(
            ((net, region) for region, nets in settings.regions.items() for net in nets),
            key=lambda item: -item[0].prefixlen,
        )

    def _put(self, rrset: dns.rrset.RRset) -> None:
        self.static.setdefault(rrset.name, {})[rrset.rdtype] = rrset


def _address_rrset(
    name: dns.name.Name, addresses: Sequence[IPAddress], ttl: int
) -> dns.rrset.RRset:
    rdtype = _A if addresses[0].version == 4 else _AAAA
    rrset = dns.rrset.RRset(name, _IN, rdtype)
    rrset.update_ttl(ttl)
    for address in addresses:
        rrset.add(_rdata(address))
    return rrset


@functools.lru_cache(maxsize=4096)
def _rdata(address: IPAddress) -> dns.rdata.Rdata:
    return dns.rdata.from_text(_IN, _A if address.version == 4 else _AAAA, str(address))


def select_members(
    members: Sequence[Member], view: HealthView, version: int, region: str | None
) -> tuple[list[Member], str]:
    """The members to answer with for one address family, and why.

    Healthy ones in `region` when there are any, else healthy ones anywhere, else
    all of them (fail open). A member is healthy when its status is UP; one not yet
    checked (UNKNOWN) is not.
    """
    family = [m for m in members if m.address.version == version]
    if not family:
        return [], "no address of this family"
    healthy = [m for m in family if view.get(m.name) is Status.UP]
    if region is not None:
        local = [m for m in healthy if m.region == region]
        if local:
            return local, f"healthy in {region}"
    if healthy:
        return healthy, "healthy"
    return family, "fail open: none passes its health check"


def client_region(
    zone: Zone, source: IPAddress | None, ecs: dns.edns.ECSOption | None
) -> tuple[str | None, int]:
    """The client's region and the ECS scope prefix length the answer holds for."""
    if not zone.networks:
        return None, 0
    address: IPAddress | None = source
    srclen = 0
    if ecs is not None and ecs.srclen > 0:
        try:
            address = ipaddress.ip_address(ecs.address)
        except ValueError:
            address = source
        else:
            srclen = ecs.srclen
    if address is None:
        return None, srclen
    for net, region in zone.networks:
        if net.version == address.version and address in net:
            return region, net.prefixlen
    return None, srclen


def udp_limit(query: dns.message.Message, zone: Zone) -> int:
    """The largest UDP answer this query allows."""
    if query.edns < 0:
        return CLASSIC_UDP_LIMIT
    return max(CLASSIC_UDP_LIMIT, min(query.payload, zone.max_udp_payload))


def respond(
    query: dns.message.Message, source: IPAddress | None, view: HealthView, zone: Zone
) -> dns.message.Message:
    """The answer to a parsed query that has exactly one question."""
    response = dns.message.make_response(query, our_payload=zone.max_udp_payload)
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if query.edns > 0:
        response.set_rcode(dns.rcode.BADVERS)
        return response
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if (
        question.rdclass != _IN
        or not qname.is_subdomain(zone.origin)
        or qtype in (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
    ):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    if qname not in zone.existing:
        response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(zone.soa)
        return response
    ecs = next((o for o in query.options if isinstance(o, dns.edns.ECSOption)), None)
    region, scope = client_region(zone, source, ecs)
    if ecs is not None:
        echo = dns.edns.ECSOption(ecs.address, ecs.srclen, scope)
        response.use_edns(0, 0, zone.max_udp_payload, options=[echo])

    answer: dns.rrset.RRset | None = None
    if qtype == dns.rdatatype.ANY:
        answer = dns.rrset.RRset(qname, _IN, dns.rdatatype.HINFO)
        answer.update_ttl(zone.ttl)
        answer.add(_RFC8482)
    elif qtype in (_A, _AAAA) and qname in zone.dynamic:
        chosen, _ = select_members(zone.dynamic[qname], view, 4 if qtype == _A else 6, region)
        if chosen:
            # dnspython shuffles an RRset's records as it renders them, so clients that
            # take the first address spread over all of them.
            answer = _address_rrset(qname, [m.address for m in chosen], zone.ttl)
    elif qtype in zone.static.get(qname, {}):
        static = zone.static[qname][dns.rdatatype.RdataType(qtype)]
        answer = dns.rrset.RRset(qname, _IN, static.rdtype)
        answer.update_ttl(static.ttl)
        for rdata in static:
            answer.add(rdata)
        if qtype == dns.rdatatype.NS:
            response.additional.extend(zone.glue)
    if answer is None:
        response.authority.append(zone.soa)  # NODATA
    else:
        response.answer.append(answer)
    return response


def render(response: dns.message.Message, limit: int) -> bytes:
    """The response's wire form in at most `limit` bytes; header and question with TC=1
    when the whole answer does not fit."""
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        pass
    response.answer.clear()
    response.authority.clear()
    response.additional.clear()
    response.flags |= dns.flags.TC
    return response.to_wire(max_size=limit)


def formerr(wire: bytes) -> bytes | None:
    """FORMERR for a query whose header reads but whose body does not; None for no answer."""
    if len(wire) < HEADER_SIZE or wire[2] & 0x80:
        return None
    # Same id, QR=1, the query's opcode and RD, rcode FORMERR, all counts 0.
    flags_hi = 0x80 | (wire[2] & 0x79)
    return wire[:2] + bytes([flags_hi, dns.rcode.FORMERR]) + bytes(8)


def parse_query(wire: bytes) -> dns.message.Message | None:
    """The query in `wire`, or None when it does not parse or has other than one question."""
    try:
        query = dns.message.from_wire(wire, ignore_trailing=False)
    except Exception:  # any failure to parse untrusted bytes is the sender's
        return None
    return query if len(query.question) == 1 else None


def is_query(wire: bytes) -> bool:
    """Whether `wire` is worth answering at all: a whole header, and QR=0 (never answer
    a response, or two servers could bounce messages forever)."""
    return len(wire) >= HEADER_SIZE and not wire[2] & 0x80


def answer_wire(
    wire: bytes,
    source: IPAddress | None,
    view: HealthView,
    zone: Zone,
    *,
    tcp: bool = False,
    slip: bool = False,
) -> bytes | None:
    """The bytes to send back for the query `wire` from `source`, or None to send nothing.

    `slip` answers with header and question only and TC=1 (a rate-limited query's
    way back over TCP). Never raises for any input.
    """
    if not is_query(wire):
        return None
    query = parse_query(wire)
    if query is None:
        return formerr(wire)
    if slip:
        response = dns.message.make_response(query, our_payload=zone.max_udp_payload)
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=udp_limit(query, zone))
    response = respond(query, source, view, zone)
    return render(response, TCP_LIMIT if tcp else udp_limit(query, zone))
