"""Serving the studio inside the service's own event loop, with uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket

import uvicorn

log = logging.getLogger(__name__)

PORT_TRIES = 20  # a taken port: the next ones, as Jupyter does


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        # the service owns SIGINT/SIGTERM: it stops the studio with everything else
        yield


def bind(host: str, port: int, tries: int = PORT_TRIES) -> socket.socket:
    """A listening socket on ``host``, at ``port`` or the next free one (0: any)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for candidate in ([0] if port == 0 else range(port, min(port + tries, 65536))):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise
        sock.listen(128)
        sock.setblocking(False)
        return sock
    raise OSError(errno.EADDRINUSE, f"no free port for the studio on {host} from {port} to {port + tries - 1}"
                                    f" (set VCHAR_STUDIO_PORT): {last}")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class StudioServer:
    """uvicorn serving ``app`` on one socket until :meth:`stop`."""

    def __init__(self, app, host: str, port: int):
        self.app, self.host, self.want_port = app, host, port
        self.port = 0
        self._server: _Server | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        sock = bind(self.host, self.want_port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=3, proxy_headers=False)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]), name="studio")
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("the studio's server stopped as it started")
            await asyncio.sleep(0.01)
        if not is_loopback(self.host):
            log.warning("the studio listens on %s: put it behind a TLS proxy (see the README)", self.host)

    def url(self, token: str) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        if self.host in ("0.0.0.0", "::"):
            host = socket.gethostname()
        return f"http://{host}:{self.port}/?token={token}"

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 10)
