"""A tiny fast HTTP/1.1 backend for the benchmark: a fixed 200 response per request head.

    python backend.py PORT

uvloop and a bare Protocol that counts request heads (GETs without bodies,
as wrk sends) and answers each with the same bytes, so that the backend
costs far less than any proxy in front of it.
"""

from __future__ import annotations

import asyncio
import sys

import uvloop

RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n"
)


class Fixed(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.tail = b""

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        n = data.count(b"\r\n\r\n")
        end = data.rfind(b"\r\n\r\n")
        self.tail = data[end + 4 :] if end >= 0 else data
        if n:
            self.transport.write(RESPONSE * n)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(
        Fixed, "127.0.0.1", port, backlog=4096, reuse_port=True
    )
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main(int(sys.argv[1])))
