"""A worker process: serves the listening socket it inherited, on uvloop.

Started by the controller as `python -m spofless.lb._worker LISTEN_FD CHANNEL_FD`.
The first message on the channel is the settings; then the controller sends
health views and `stop`; the worker sends passive observations, ejections
and its counters twice a second.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys

import uvloop

from spofless._logging import setup_logging
from spofless.lb._balancer import Balancer
from spofless.lb._channel import LineChannel
from spofless.lb._http import ClientConn
from spofless.lb._messages import (
    BackendState,
    Message,
    Ready,
    Routes,
    Settings,
    Stats,
    Stop,
    View,
)
from spofless.lb._redis import RedisClient
from spofless.lb._settings import LbSettings
from spofless.lb._tcp import TcpClient

logger = logging.getLogger(__name__)

STATS_INTERVAL = 0.5
IDLE_GRACE = 0.5  # seconds a keep-alive client may stay quiet before a stopping worker closes it


async def serve(listen: socket.socket, chan_sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    first: asyncio.Future[Settings] = loop.create_future()
    stop = asyncio.Event()
    bal: Balancer | None = None
    # Views that came before the balancer existed; the last wins.
    early: list[dict[str, BackendState]] = []
    seq = 0  # the last view applied (or kept for the balancer to apply first)
    late_routes: list[Routes] = []  # routes changed before the balancer existed

    def on_message(msg: Message) -> None:
        nonlocal seq
        if isinstance(msg, Settings) and not first.done():
            first.set_result(msg)
            seq = max(seq, msg.seq)
        elif isinstance(msg, View):
            seq = msg.seq
            if bal is not None:
                bal.apply_view(msg.view)
            else:
                early[:] = [msg.view]
        elif isinstance(msg, Routes):
            seq = msg.seq
            if bal is not None:
                bal.update_routes(LbSettings.model_validate(msg.settings), msg.view)
            else:  # still starting: its balancer is built from the routes of now
                late_routes[:] = [msg]
                early[:] = [msg.view]
        elif isinstance(msg, Stop):
            stop.set()

    _, chan = await loop.connect_accepted_socket(
        lambda: LineChannel(on_message, stop.set), sock=chan_sock
    )
    async with asyncio.timeout(30):
        msg = await first
    first_settings = late_routes[-1].settings if late_routes else msg.settings
    bal = Balancer(LbSettings.model_validate(first_settings), report=chan.send)
    setup_logging(f"{bal.settings.instance} worker {os.getpid()}")
    bal.start(loop)
    bal.apply_view(early[-1] if early else msg.view)
    protocols = {"http": ClientConn, "tcp": TcpClient, "redis": RedisClient}
    proto = protocols[bal.settings.mode]
    server = await loop.create_server(lambda: proto(bal), sock=listen, backlog=4096)
    chan.send(Ready(os.getpid()))
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, lambda: None)  # the controller decides
    while not stop.is_set():
        try:
            async with asyncio.timeout(STATS_INTERVAL):
                await stop.wait()
        except TimeoutError:
            pass
        chan.send(Stats(os.getpid(), bal.local_stats(), seq))
    # Graceful stop: no new connections, finish what is in flight, then go.
    server.close()
    bal.draining = True
    opts = bal.settings.options
    deadline = loop.time() + opts.drain_timeout
    while loop.time() < deadline:
        busy = False
        now = loop.time()
        for conn in list(bal.timed):
            if isinstance(conn, ClientConn):
                if conn.active is None and conn.req is None and conn.transport is not None:
                    # A busy client gets `Connection: close` on its next response; one that
                    # stays quiet for IDLE_GRACE is closed (the usual keep-alive race).
                    if now - conn.idle_since >= IDLE_GRACE:
                        conn.transport.close()
                    else:
                        busy = True
                else:
                    busy = True
            elif isinstance(conn, TcpClient):
                busy = True
            elif isinstance(conn, RedisClient):
                if conn.pending:
                    busy = True
                elif conn.transport is not None:
                    conn.transport.close()
        if not busy:
            break
        await asyncio.sleep(0.05)
    chan.send(Stats(os.getpid(), bal.local_stats(), seq))
    bal.stop()


def main() -> None:
    setup_logging("lb worker")  # renamed once the settings name the instance
    listen = socket.socket(fileno=int(sys.argv[1]))
    chan = socket.socket(fileno=int(sys.argv[2]))
    uvloop.run(serve(listen, chan))


if __name__ == "__main__":
    main()
