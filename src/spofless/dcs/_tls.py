"""The files of one side of an etcd TLS connection, and the client context they make."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class EtcdTls(BaseModel):
    """A CA and one certificate with its key, as PEM files.

    For a member: the certificate it serves clients and peers with, and the CA whose
    certificates it accepts from them (`--client-cert-auth`). For a client: the
    certificate it presents, and the CA it verifies the member with. spofless's own
    certificates serve both ends (spofless.security issues them).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ca: Path
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context: verifies the member against `ca` (its address must be in the
        certificate) and presents `cert`. OSError or ssl.SSLError when a file is bad."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.cert), str(self.key))
        return context
