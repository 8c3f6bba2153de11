"""The web instance of the rollout benchmark: every request takes `--work-ms`.

    python app.py --port PORT --name NAME [--work-ms 200]

GET /healthz answers at once; any other GET answers 200 after `--work-ms`
milliseconds of "work". SIGTERM ends the process at once, as an application
without a graceful shutdown does: a request still in progress then fails, which
is what a rolling restart must avoid by draining first.
"""

from __future__ import annotations

import argparse
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="web")
    ap.add_argument("--work-ms", type=float, default=200.0)
    args = ap.parse_args()
    body = f'{{"instance": "{args.name}"}}'.encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            if self.path != "/healthz":
                time.sleep(args.work_ms / 1000)
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
