"""The supervisor's control socket: what another spofless command asks a running stack.

    <state_dir>/control.sock     a Unix socket, mode 0600: the user who ran `up` only

One JSON request per connection, one JSON answer:

    {"op": "replace", "instance": "web/0", "argv": ["python", "-m", "app", ...]}
        stop the instance (SIGTERM, SIGKILL after the grace), start it again with
        `argv` (null: the command it runs now); answered once the new process runs
        with {"ok": true, "pid": N, "previous_argv": [...]}; its health is then
        judged afresh and shows in the state file (`starting`, then `up`).
    {"op": "commands"}
        {"ok": true, "commands": {"web/0": [...], ...}}: what each instance runs.
    {"op": "surge", "instance": "web/2", "host": "h3", "run": "app --port {port}"}
        start a temporary instance of a service on a free port of `host` (`run`
        null: the component's command); {"ok": true, "pid": N, "address": "ip:port"}.
        It lives while the state dir's rollout lock is held (spofless.stack._surge).
    {"op": "unsurge", "instance": "web/2"}
        remove it from the load balancers (drained first), stop it; {"ok": true}.

An error is {"ok": false, "error": "..."}; a malformed request never stops the
supervisor. `spofless rollout` is the client (spofless.rollout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from spofless.stack._errors import StackError

logger = logging.getLogger(__name__)

__all__ = ["ControlServer", "control_path", "request"]

MAX_REQUEST = 1 << 16
Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def control_path(state_dir: Path) -> Path:
    return state_dir / "control.sock"


class ControlServer:
    """Serves the control socket of one supervisor; `close()` removes it."""

    def __init__(self, state_dir: Path, handle: Handler) -> None:
        self.path = control_path(state_dir)
        self._handle = handle
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by a supervisor that died (the lock says none runs)
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST
            )
        finally:
            os.umask(old)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(10.0):
                    line = await reader.readline()
                req = json.loads(line)
                if not isinstance(req, dict):
                    raise ValueError("a request is a JSON object")
            except (ValueError, TimeoutError, asyncio.LimitOverrunError) as exc:
                answer: dict[str, Any] = {"ok": False, "error": f"bad request: {exc}"}
            else:
                try:
                    answer = await self._handle(req)
                except StackError as exc:
                    answer = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            logger.warning("control socket: %s", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def request(state_dir: Path, req: dict[str, Any], limit: float) -> dict[str, Any]:
    """Send one request to the supervisor running from `state_dir`; its answer.

    StackError when no supervisor answers, or when it answers with an error."""
    path = control_path(state_dir)
    try:
        async with asyncio.timeout(limit):
            reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_REQUEST)
            try:
                writer.write(json.dumps(req).encode() + b"\n")
                await writer.drain()
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        raise StackError(f"the supervisor did not answer within {limit:g}s ({path})") from None
    except OSError as exc:
        raise StackError(
            f"no supervisor answers on {path} ({exc.strerror or exc}): is the stack up?"
        ) from None
    try:
        answer = json.loads(line)
    except ValueError:
        raise StackError(f"the supervisor's answer is not JSON: {line[:200]!r}") from None
    if not isinstance(answer, dict) or not answer.get("ok"):
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise StackError(f"the supervisor refused: {error}")
    return answer


def argv_of(value: Any, where: str) -> tuple[str, ...] | None:
    """A request's `argv` (None: keep the command), or StackError naming `where`."""
    if value is None:
        return None
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or not all(isinstance(w, str) and w for w in value)
    ):
        raise StackError(f"{where}: argv must be a non-empty list of non-empty strings")
    return tuple(value)
