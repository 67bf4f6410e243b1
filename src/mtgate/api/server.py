"""Serving the API (uvicorn) in the bridge's own event loop, for ``mtgate serve``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from mtgate.api.app import create_app
from mtgate.bridge import Bridge
from mtgate.config import ApiSection


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """The process's signals are ``mtgate serve``'s: it stops the API, then the bridge."""
        yield


class ApiServer:
    """The HTTP API over a started ``bridge``, listening as ``section`` says."""

    def __init__(self, bridge: Bridge, section: ApiSection) -> None:
        config = uvicorn.Config(
            create_app(bridge, section.auth()),
            host=section.host,
            port=section.port,
            ssl_certfile=section.tls_cert or None,
            ssl_keyfile=section.tls_key or None,
            log_config=None,
            access_log=False,
            lifespan="off",
            http="httptools",
            server_header=False,
            # The API serves its callers directly (TLS of its own): a caller's X-Forwarded-*
            # headers are not trusted, and the middleware that reads them is not paid for.
            proxy_headers=False,
            timeout_graceful_shutdown=5,  # event streams are closed, not waited for
        )
        self._server = _Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; returns the address (the port chosen when configured as 0)."""
        self._task = asyncio.get_running_loop().create_task(self._server.serve(), name="api")
        while not self._server.started:
            if self._task.done():
                await self._task  # raises why it could not start (address in use, bad TLS)
                raise RuntimeError("the API server stopped before it started")
            await asyncio.sleep(0.01)
        sock = self._server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return str(host), int(port)

    async def stop(self) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task
