"""The certificates etcd runs with, from the topology's own CA: names, usages, handshakes.

The handshakes run in memory (ssl.MemoryBIO): no sockets, the same checks a real etcd
member and client make (chain, the member's address in its certificate, usages).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from spofless.dcs import EtcdTls
from spofless.security import (
    SecretsError,
    etcd_client_tls,
    etcd_member_tls,
    init_secrets,
)
from spofless.security._ca import issue, new_ca
from spofless.topology import Topology, load_topology

TOPOLOGY = """\
name: shop
hosts:
  n1: {address: 10.1.0.1}
  n2: {address: 10.1.0.2}
components:
  etcd: {kind: etcd, instances: [n1, n2, n1], port: 2379, peer_port: 2479}
  app: {kind: service, instances: [n2], needs: [etcd]}
entry: [app]
"""


def _topology(tmp_path: Path, extra: str = "") -> Topology:
    f = tmp_path / "shop.yaml"
    f.write_text(TOPOLOGY + extra)
    return load_topology(f)


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _usages(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _server_context(tls: EtcdTls) -> ssl.SSLContext:
    """What an etcd member with --client-cert-auth does: present its certificate,
    require a client certificate signed by the CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls.cert, tls.key)
    context.load_verify_locations(tls.ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _handshake(client: ssl.SSLContext, server: ssl.SSLContext, address: str) -> None:
    """A full TLS handshake in memory; raises ssl.SSLError when either side refuses."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=address)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, side in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server judges the client's certificate after the client thinks
            # it is done; a refusal reaches the client on its first read.
            c.write(b"x")
            s_in.write(c_out.read())
            s.read(1)
            return
    raise AssertionError("handshake did not finish")


def test_member_certificates_name_the_hosts_address_and_serve_both_ends(tmp_path: Path) -> None:
    topology = _topology(tmp_path)
    init_secrets(topology)
    tls = etcd_member_tls(topology, "n2")
    assert tls is not None and tls.cert.name == "n2.crt"
    cert = _cert(tls.cert)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"10.1.0.2", "127.0.0.1"}
    # Server for clients, client for its peers (and etcd's own gateway).
    assert _usages(cert) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    client = etcd_client_tls(topology)
    assert client is not None
    ccert = _cert(client.cert)
    assert _usages(ccert) == {ExtendedKeyUsageOID.CLIENT_AUTH}
    assert tls.ca == client.ca and oct(client.key.stat().st_mode & 0o777) == "0o600"


def test_the_client_certificate_is_accepted_and_the_member_verified(tmp_path: Path) -> None:
    topology = _topology(tmp_path)
    init_secrets(topology)
    member, client = etcd_member_tls(topology, "n1"), etcd_client_tls(topology)
    assert member is not None and client is not None
    _handshake(client.client_context(), _server_context(member), "10.1.0.1")
    # Peers: one member's certificate presented to another.
    peer = etcd_member_tls(topology, "n2")
    assert peer is not None
    _handshake(peer.client_context(), _server_context(member), "10.1.0.1")


def test_a_member_refuses_a_client_without_certificate_or_from_another_ca(tmp_path: Path) -> None:
    topology = _topology(tmp_path)
    init_secrets(topology)
    member = etcd_member_tls(topology, "n1")
    assert member is not None
    bare = ssl.create_default_context(cafile=str(member.ca))
    with pytest.raises(ssl.SSLError):
        _handshake(bare, _server_context(member), "10.1.0.1")
    ca_crt, ca_key = new_ca("other")
    crt, key = issue(ca_crt, ca_key, "intruder", server=False)
    (tmp_path / "o.crt").write_bytes(crt)
    (tmp_path / "o.key").write_bytes(key)
    foreign = ssl.create_default_context(cafile=str(member.ca))
    foreign.load_cert_chain(tmp_path / "o.crt", tmp_path / "o.key")
    with pytest.raises(ssl.SSLError):
        _handshake(foreign, _server_context(member), "10.1.0.1")


def test_a_client_refuses_a_member_at_an_address_its_certificate_does_not_name(
    tmp_path: Path,
) -> None:
    topology = _topology(tmp_path)
    init_secrets(topology)
    member, client = etcd_member_tls(topology, "n1"), etcd_client_tls(topology)
    assert member is not None and client is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(client.client_context(), _server_context(member), "10.1.0.2")


def test_without_tls_there_are_no_certificates_and_missing_ones_say_how_to_make_them(
    tmp_path: Path,
) -> None:
    plain = _topology(tmp_path, "security: {tls: false}\n")
    assert etcd_client_tls(plain) is None and etcd_member_tls(plain, "n1") is None
    topology = _topology(tmp_path)
    with pytest.raises(SecretsError, match="spofless secrets init"):
        etcd_client_tls(topology)
    unchecked = etcd_client_tls(topology, check=False)
    assert unchecked is not None and not unchecked.cert.exists()  # paths only, nothing made


def test_a_copy_without_the_ca_key_makes_nothing_of_its_own(tmp_path: Path) -> None:
    """A machine given the CA certificate but not its key must not make a CA or
    passwords the others do not share: init (and so `up`) makes nothing there."""
    import shutil

    (tmp_path / "home").mkdir()
    init_secrets(_topology(tmp_path / "home"))
    copy_dir = tmp_path / "copy"
    copy_dir.mkdir()
    (copy_dir / "shop.yaml").write_text(TOPOLOGY)
    copy = load_topology(copy_dir / "shop.yaml")
    d = copy_dir / ".spofless" / "shop" / "secrets"
    (d / "hosts").mkdir(parents=True)
    shutil.copy(tmp_path / "home" / ".spofless" / "shop" / "secrets" / "ca.crt", d / "ca.crt")
    before = (d / "ca.crt").read_bytes()
    assert init_secrets(copy) == []
    assert (d / "ca.crt").read_bytes() == before
    assert sorted(p.name for p in d.rglob("*")) == ["ca.crt", "hosts"]
    with pytest.raises(SecretsError, match=r"where ca\.key is and copy the file here"):
        etcd_client_tls(copy)


def test_up_refuses_an_etcd_member_without_its_certificate(tmp_path: Path) -> None:
    """On a machine whose copy lacks the member's host certificate (and the CA key to
    issue it), `up` names the file before starting anything; with the key, it issues it."""
    from spofless.stack import StackError, plan_stack
    from spofless.stack._preflight import check_settings

    topology = _topology(tmp_path)
    init_secrets(topology)
    d = tmp_path / ".spofless" / "shop" / "secrets"
    (d / "hosts" / "n2.crt").unlink()
    plan = plan_stack(topology, tmp_path / "state", ["n2"])
    check_settings(plan)  # the CA key is here: the certificate is issued again
    assert (d / "hosts" / "n2.crt").exists()
    (d / "hosts" / "n2.crt").unlink()
    (d / "ca.key").unlink()
    with pytest.raises(StackError, match=r"etcd/1: .*hosts/n2.crt is missing"):
        check_settings(plan)
