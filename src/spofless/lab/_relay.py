"""The user-space link emulator, for kernels without the netem qdisc.

Each impaired link is a pair of tap devices in the switch namespace, one on each bridge;
this process (started inside the switch namespace) copies every frame from one tap to
the other after the link's delay and jitter, dropping the link's share of loss. Frames
leave in the order they came (jitter never reorders), unlike netem's default.

Tap devices are made without offloads, so the kernel hands the relay ordinary frames
(segmented, checksummed) however the hosts' TCP stacks batch them.

Run: `python -m spofless.lab._relay STATE_FILE`. SIGHUP re-reads the state file (the
fault commands change impairments that way); SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import random
import signal
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

from spofless._logging import setup_logging
from spofless.lab._state import LabState, relay_ready_path

logger = logging.getLogger("spofless.lab.relay")

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
MAX_FRAME = 65536
# Frames queued per direction beyond which new ones are dropped, like a full netem
# queue: bounds memory when a link's delay meets a flood.
MAX_QUEUED = 20_000


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    except OSError:
        os.close(fd)
        raise
    return fd


@dataclass
class Direction:
    """Frames read from `src` are written to `dst` after the link's impairment."""

    name: str
    src: int
    dst: int
    delay: float = 0.0  # seconds
    jitter: float = 0.0  # seconds
    loss: float = 0.0  # probability
    last_due: float = 0.0
    queued: int = 0


class Relay:
    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.directions: dict[str, list[Direction]] = {}  # element -> [up, down]
        self.loop = asyncio.get_running_loop()

    def load(self) -> LabState:
        return LabState.from_json(json.loads(self.state_file.read_text()))

    def open(self) -> None:
        state = self.load()
        for link in state.plan.links:
            lower, upper = open_tap(link.lower), open_tap(link.upper)
            up = Direction(f"{link.element} up", lower, upper)
            down = Direction(f"{link.element} down", upper, lower)
            self.directions[link.element] = [up, down]
            for d in (up, down):
                self.loop.add_reader(d.src, self._on_readable, d)
        self.configure(state)

    def configure(self, state: LabState) -> None:
        for link in state.plan.links:
            imp = state.effective(link)
            for d in self.directions.get(link.element, []):
                d.delay, d.jitter, d.loss = (
                    imp.delay_ms / 1000,
                    imp.jitter_ms / 1000,
                    imp.loss_pct / 100,
                )
            logger.info(
                "link %s: delay %.3f ms jitter %.3f ms loss %.4f%% per crossing",
                link.element,
                imp.delay_ms,
                imp.jitter_ms,
                imp.loss_pct,
            )

    def reload(self) -> None:
        try:
            self.configure(self.load())
        except (OSError, ValueError, KeyError) as exc:
            logger.error(
                "cannot re-read %s, keeping the links as they are: %s", self.state_file, exc
            )

    def _on_readable(self, d: Direction) -> None:
        now = self.loop.time()
        for _ in range(256):  # bounded burst, then let the timers run
            try:
                frame = os.read(d.src, MAX_FRAME)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.error("%s: read failed: %s", d.name, exc)
                return
            if d.loss and random.random() < d.loss:
                continue
            delay = d.delay
            if d.jitter:
                delay = max(0.0, delay + random.uniform(-d.jitter, d.jitter))
            if delay <= 0 and d.queued == 0:
                self._write(d, frame, queued=False)
                continue
            if d.queued >= MAX_QUEUED:
                continue
            due = max(now + delay, d.last_due)  # keep the order frames came in
            d.last_due = due
            d.queued += 1
            self.loop.call_at(due, self._write, d, frame, True)

    def _write(self, d: Direction, frame: bytes, queued: bool) -> None:
        if queued:
            d.queued -= 1
        # The far side down or full: the frame is lost, as on a wire.
        with contextlib.suppress(OSError):
            os.write(d.dst, frame)


async def _main(state_file: Path) -> None:
    relay = Relay(state_file)
    relay.open()
    stop = asyncio.Event()
    relay.loop.add_signal_handler(signal.SIGHUP, relay.reload)
    relay.loop.add_signal_handler(signal.SIGTERM, stop.set)
    relay.loop.add_signal_handler(signal.SIGINT, stop.set)
    state = relay.load()
    ready = relay_ready_path(state_file.parent, state.plan.lab_id)
    ready.write_text(str(os.getpid()))
    logger.info("relay for lab %s ready, pid %d", state.plan.lab_id, os.getpid())
    await stop.wait()
    logger.info("relay for lab %s stopping", state.plan.lab_id)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m spofless.lab._relay STATE_FILE", file=sys.stderr)
        return 2
    setup_logging("lab relay")
    asyncio.run(_main(Path(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
