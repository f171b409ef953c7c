"""A fake HTTP server on a free loopback port, for tests of clients (judges, reward servers)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler], poll: float = 0.02):
    """Start ``handler`` on 127.0.0.1 in daemon threads; returns (server, "http://127.0.0.1:P").
    Stop it with :func:`stop`: request threads that still hang are not waited for."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.block_on_close = False
    threading.Thread(target=server.serve_forever, args=(poll,), daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()
