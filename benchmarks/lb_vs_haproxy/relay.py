"""The floor of a uvloop TCP proxy: a relay with no features, for the tcp-mode rows.

    python relay.py PORT BACKEND_PORT [BACKEND_PORT ...]

Each client connection is piped to one backend (round robin) with two bare
asyncio Protocols: no health checks, retries, timeouts, counters or flow
control. spofless's tcp mode does the same system calls plus its features;
what it costs beyond this relay is what its Python code adds, and what this
relay costs beyond HAProxy is what uvloop adds. Run one process per worker
(SO_REUSEPORT), like `spofless lb --workers N`.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

import uvloop


class Upstream(asyncio.Protocol):
    def __init__(self, client: Client) -> None:
        self.client = client

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client.attach(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.client.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.transport.close()


class Client(asyncio.Protocol):
    backends: itertools.cycle[int]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.up: asyncio.Transport | None = None
        self.pending: list[bytes] = []
        loop = asyncio.get_running_loop()
        self.opening = loop.create_task(
            loop.create_connection(lambda: Upstream(self), "127.0.0.1", next(self.backends))
        )

    def attach(self, up: asyncio.Transport) -> None:
        self.up = up
        if self.pending:
            up.write(b"".join(self.pending))
            self.pending = []
        if self.transport.is_closing():
            up.close()

    def data_received(self, data: bytes) -> None:
        if self.up is not None:
            self.up.write(data)
        else:
            self.pending.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.up is not None:
            self.up.close()


async def main(port: int, backends: list[int]) -> None:
    Client.backends = itertools.cycle(backends)
    server = await asyncio.get_running_loop().create_server(
        Client, "127.0.0.1", port, backlog=4096, reuse_port=True
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1]), [int(p) for p in sys.argv[2:]]))
