"""A transport that records what the load balancer's protocol objects do to it."""

from __future__ import annotations

from typing import Any


class FakeTransport:
    """Keeps what is written; `closed` after close/abort; `reading` until paused."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False
        self.reading = True

    @property
    def paused(self) -> bool:
        return not self.reading

    def write(self, data: bytes) -> None:
        self.out += data

    def write_eof(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("10.0.0.7", 40000) if name == "peername" else default
