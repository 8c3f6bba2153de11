"""Controller <-> worker messages (`_messages`): one JSON object per line over a socketpair.

Low volume only (health views, passive observations, stats once a second);
never used per request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import cast

from spofless.lb._messages import Message, decode, encode


class LineChannel(asyncio.Protocol):
    def __init__(self, on_message: Callable[[Message], None], on_lost: Callable[[], None]) -> None:
        self.on_message = on_message
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            if line:
                self.on_message(decode(json.loads(line)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost()

    def send(self, msg: Message) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(json.dumps(encode(msg), separators=(",", ":")).encode() + b"\n")
