"""Active health checks: one async function per check type, no state.

Every check is bounded by `spec.timeout` and returns a `CheckResult`; none
raises for a failing target. A refused or reset connection is *definite*
(nothing listens there), a timeout is not (the target may be busy).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from spofless.topology import HealthCheck


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check."""

    ok: bool
    detail: str = ""
    definite: bool = False  # refused or reset: no doubt that nothing serves there
    duration: float = 0.0  # seconds


Checker = Callable[[HealthCheck, str, int], Awaitable[CheckResult]]

_MAX_RESPONSE = 64 * 1024  # bytes of an http check's response that are read


async def check_tcp(spec: HealthCheck, host: str, port: int) -> CheckResult:
    """Healthy when a TCP connection opens; with `expect`, when the answer (to `send`,
    if given) contains it. A frozen process passes a bare connect (its kernel
    completes the handshake) but never answers."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        if spec.expect is None:
            return CheckResult(True, "connected")
        if spec.send:
            writer.write(spec.send.encode())
        want = spec.expect.encode()
        answer = b""
        while want not in answer and len(answer) < _MAX_RESPONSE:
            chunk = await reader.read(_MAX_RESPONSE)
            if not chunk:
                return CheckResult(False, f"closed without {spec.expect!r}")
            answer += chunk
        if want not in answer:
            return CheckResult(False, f"answer lacks {spec.expect!r}")
        return CheckResult(True, f"answered {spec.expect!r}")
    finally:
        writer.close()


async def check_http(
    spec: HealthCheck, host: str, port: int, tls: ssl.SSLContext | None = None
) -> CheckResult:
    """Healthy when `GET spec.path` answers an expected status (and body substring);
    with `tls`, over TLS (the server verified as `host`, a client certificate presented
    when the context has one)."""
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    try:
        request = (
            f"GET {spec.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "User-Agent: spofless-health\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode("latin-1"))
        head = await reader.readuntil(b"\r\n\r\n")
        body = b""
        if spec.expect_body is not None:
            # Servers that ignore `Connection: close` keep the socket open: read by length.
            length = None
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value)
            if length is not None:
                body = await reader.readexactly(min(length, _MAX_RESPONSE))
            else:
                body = await reader.read(_MAX_RESPONSE)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return CheckResult(False, "incomplete HTTP response")
    finally:
        writer.close()
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        return CheckResult(False, "not an HTTP response")
    try:
        status = int(status_line[1])
    except ValueError:
        return CheckResult(False, "not an HTTP response")
    if status not in spec.expect_status:
        return CheckResult(False, f"status {status}")
    if spec.expect_body is not None and spec.expect_body.encode() not in body:
        return CheckResult(False, f"body lacks {spec.expect_body!r}")
    return CheckResult(True, f"status {status}")


async def check_command(spec: HealthCheck, host: str, port: int) -> CheckResult:
    """Healthy when the command exits 0; `{host}` and `{port}` expand."""
    assert spec.command is not None  # the schema guarantees it
    cmd = spec.command.replace("{host}", host).replace("{port}", str(port))
    proc = await asyncio.create_subprocess_shell(
        cmd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        code = await proc.wait()
    except asyncio.CancelledError:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    return CheckResult(code == 0, f"exit status {code}")


async def check_postgres(spec: HealthCheck, host: str, port: int) -> CheckResult:
    """Healthy when the postmaster answers an SSLRequest ('S' or 'N').

    This proves a PostgreSQL server accepts connections without logging in;
    the PostgreSQL agent may register a richer checker under the same type.
    """
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # length 8, SSLRequest code
        answer = await reader.read(1)
    finally:
        writer.close()
    if answer in (b"S", b"N"):
        return CheckResult(True, "postmaster answered")
    return CheckResult(False, "no PostgreSQL answer")


CHECKERS: dict[str, Checker] = {
    "tcp": check_tcp,
    "http": check_http,
    "command": check_command,
    "postgres": check_postgres,
}


async def run_check(
    spec: HealthCheck, host: str, port: int, *, tls: ssl.SSLContext | None = None
) -> CheckResult:
    """Run the check `spec` describes against host:port, bounded by `spec.timeout`;
    `tls`: an http check speaks TLS with this context (other types ignore it)."""
    checker = CHECKERS[spec.type]
    if tls is not None and spec.type == "http":
        checker = functools.partial(check_http, tls=tls)
    start = time.monotonic()
    try:
        async with asyncio.timeout(spec.timeout):
            result = await checker(spec, host, port)
    except TimeoutError:
        result = CheckResult(False, f"timeout after {spec.timeout:g}s")
    except OSError as exc:
        detail, definite = connect_failure(exc)
        result = CheckResult(False, detail, definite=definite)
    return CheckResult(result.ok, result.detail, result.definite, time.monotonic() - start)


def connect_failure(exc: OSError) -> tuple[str, bool]:
    """What a failed connection says: a detail, and whether it is definite.

    Refused, reset and broken pipe are definite: the host answered and nothing
    listens (or the process died), so the instance is down now. Anything else
    (unreachable, a timeout) may pass and counts towards `fall` like a failed check.
    """
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused", True
    if isinstance(exc, ConnectionResetError):
        return "connection reset", True
    if isinstance(exc, BrokenPipeError):
        return exc.strerror or "broken pipe", True
    return exc.strerror or type(exc).__name__, False
