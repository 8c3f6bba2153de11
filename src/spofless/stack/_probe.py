"""Health probes for the supervisor: the thinnest adapter until spofless.health lands.

TEMPORARY: spofless.health (branch lb) owns health checks and the rise/fall
detector. This module keeps to the two things the supervisor needs from it,
`probe()` (one check, bounded by the check's timeout) and `RiseFall`, so that
swapping it for spofless.health changes this file only.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from dataclasses import dataclass

from spofless.topology import HealthCheck


async def probe(check: HealthCheck, ip: str, port: int | None) -> bool:
    """Run `check` once against ip:port; True when healthy. Never raises for a failed check."""
    try:
        return await asyncio.wait_for(_probe(check, ip, port), check.timeout)
    except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
        return False


async def _probe(check: HealthCheck, ip: str, port: int | None) -> bool:
    if check.type == "command":
        assert check.command is not None
        argv = [
            w.replace("{host}", ip).replace("{port}", str(port)) for w in shlex.split(check.command)
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            return await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    if port is None:
        return False
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        if check.type != "http":
            return True  # tcp (and postgres until spofless.health): accepting connections
        request = f"GET {check.path} HTTP/1.0\r\nHost: {ip}:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode())
        await writer.drain()
        head = await reader.readline()
        parts = head.split()
        if len(parts) < 2 or int(parts[1]) not in check.expect_status:
            return False
        if check.expect_body is None:
            return True
        body = await reader.read(65536)
        return check.expect_body.encode() in body
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


@dataclass
class RiseFall:
    """`fall` failures in a row mark an instance unhealthy, `rise` successes healthy again."""

    rise: int
    fall: int
    healthy: bool | None = None  # None until the first verdict
    _streak: int = 0

    def observe(self, ok: bool) -> bool | None:
        """Feed one probe result; the new verdict when it changed, else None."""
        if self.healthy is None:
            # Starting: one success is enough to call it healthy, failures wait for `fall`.
            if ok:
                self.healthy, self._streak = True, 0
                return True
            self._streak += 1
            if self._streak >= self.fall:
                self.healthy, self._streak = False, 0
                return False
            return None
        if ok == self.healthy:
            self._streak = 0
            return None
        self._streak += 1
        if self._streak >= (self.rise if ok else self.fall):
            self.healthy, self._streak = ok, 0
            return ok
        return None
