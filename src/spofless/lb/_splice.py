"""Zero-copy relaying of bulk tcp connections: splice(2) through a pipe per direction.

uvloop copies every byte through user space (a read into a buffer, a bytes
object, a write from it). For request-sized messages nothing is cheaper:
splice would need as many system calls. A connection that carries bulk data
(one read of `SPLICE_THRESHOLD` bytes or more) is switched to splice: bytes
move socket -> pipe -> socket inside the kernel, for about half the CPU per
byte (benchmarks/lb_vs_haproxy/bulk.py). HAProxy does the same with
`option splice-auto`.

The switch (driven by `_tcp`): both uvloop transports stop reading; once their
write buffers are empty, a `Splicer` takes over duplicates of the two sockets'
descriptors and moves bytes on readiness (`add_reader`/`add_writer` on the
loop, level-triggered). A direction that reads EOF passes it on with
shutdown(SHUT_WR) once its pipe is empty; when both directions have ended, or
on any error, the splicer closes its descriptors and calls `on_close`, which
closes the transports, so the usual `connection_lost` bookkeeping runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable

logger = logging.getLogger(__name__)

SPLICE_THRESHOLD = 64 * 1024  # one read this large marks a connection as bulk
PIPE_SIZE = 1 << 20  # asked for; the kernel may give less (pipe-max-size)
_CHUNK = 1 << 20
_BURST = 16  # splices per readiness event, so that one fast sender cannot hold the loop
_FLAGS = getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

AVAILABLE = hasattr(os, "splice")  # Linux, Python >= 3.10


class _Pump:
    """One direction, src -> pipe -> dst. The pipe is empty whenever src is read."""

    def __init__(self, owner: Splicer, src: int, dst: socket.socket) -> None:
        self.owner = owner
        self.loop = owner.loop
        self.src = src
        self.dst = dst
        self.r, self.w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):
            fcntl.fcntl(self.w, _F_SETPIPE_SZ, PIPE_SIZE)
        self.in_pipe = 0
        self.eof = False
        self.done = False
        self.watching: str | None = None  # "read" (src) or "write" (dst)

    def start(self) -> None:
        self._watch("read")

    def _watch(self, what: str | None) -> None:
        if self.watching == what:
            return
        if self.watching == "read":
            self.loop.remove_reader(self.src)
        elif self.watching == "write":
            self.loop.remove_writer(self.dst.fileno())
        self.watching = what
        if what == "read":
            self.loop.add_reader(self.src, self._readable)
        elif what == "write":
            self.loop.add_writer(self.dst.fileno(), self._writable)

    def _readable(self) -> None:
        try:
            for _ in range(_BURST):
                n = os.splice(self.src, self.w, _CHUNK, flags=_FLAGS)
                if n == 0:
                    self._end_of_input()
                    return
                self.in_pipe += n
                self.owner.touch()
                if not self._drain():
                    self._watch("write")  # dst is full: read no more until it drains
                    return
        except BlockingIOError:
            pass  # src has nothing more for now
        except OSError as exc:
            self.owner.fail(exc)

    def _writable(self) -> None:
        try:
            if not self._drain():
                return
        except OSError as exc:
            self.owner.fail(exc)
            return
        if self.eof:
            self._finish()
        else:
            self._watch("read")

    def _drain(self) -> bool:
        """Move what the pipe holds to dst; False when dst takes no more now."""
        while self.in_pipe:
            try:
                n = os.splice(self.r, self.dst.fileno(), self.in_pipe, flags=_FLAGS)
            except BlockingIOError:
                return False
            self.in_pipe -= n
        return True

    def _end_of_input(self) -> None:
        self.eof = True
        if self.in_pipe:
            self._watch("write")  # _writable finishes once the pipe is empty
        else:
            self._finish()

    def _finish(self) -> None:
        """src ended and everything it sent is out: pass the half-close on."""
        self._watch(None)
        with contextlib.suppress(OSError):
            self.dst.shutdown(socket.SHUT_WR)
        self.done = True
        self.owner.pump_done()

    def close(self) -> None:
        self._watch(None)
        for fd in (self.r, self.w):
            with contextlib.suppress(OSError):
                os.close(fd)


class Splicer:
    """Both directions of one client <-> backend pair, spliced until both end."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        client_fd: int,
        backend_fd: int,
        *,
        touch: Callable[[], None],
        on_close: Callable[[], None],
    ) -> None:
        self.loop = loop
        self.touch = touch
        self.on_close = on_close
        self.closed = False
        # Our own descriptors: the transports keep theirs until they close.
        self.client = socket.socket(fileno=os.dup(client_fd))
        self.backend = socket.socket(fileno=os.dup(backend_fd))
        for s in (self.client, self.backend):
            os.set_blocking(s.fileno(), False)
        self.pumps: list[_Pump] = []
        try:
            self.pumps.append(_Pump(self, self.client.fileno(), self.backend))
            self.pumps.append(_Pump(self, self.backend.fileno(), self.client))
        except OSError:
            self._release()
            raise

    def start(self) -> None:
        for pump in self.pumps:
            pump.start()

    def pump_done(self) -> None:
        if all(p.done for p in self.pumps):
            self.close()

    def fail(self, exc: OSError) -> None:
        logger.debug("splice: %s", exc)
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._release()
        self.on_close()

    def _release(self) -> None:
        for pump in self.pumps:
            pump.close()
        for s in (self.client, self.backend):
            with contextlib.suppress(OSError):
                s.close()
