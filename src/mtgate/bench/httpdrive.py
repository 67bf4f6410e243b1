"""The execution engine's side of `mtgate bench --http`: market orders over the HTTP API
from a process of its own (as a separate service calls the bridge), timed per order.

The caller is a minimal HTTP/1.1 keep-alive client on asyncio streams: the engine the bridge
serves is a compiled service whose HTTP client costs microseconds, and a Python client such
as httpx would add its own ~0.3 ms of CPU per request on the cores the bridge shares, which
is not the bridge's latency. The client checks every answer all the same (status line,
``Content-Length``, a filled order in the body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import NamedTuple
from urllib.parse import urlsplit


class Caller:
    """One keep-alive connection; one request at a time on it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, url: str) -> Caller:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def post(self, path: str, host: str, token: str, body: bytes) -> tuple[int, bytes]:
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        raw = await self._reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ValueError(f"an answer without Content-Length: {lines[0]!r}")
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


class Drive(NamedTuple):
    serial: list[float]
    """Latencies (ms) of orders sent one at a time."""
    concurrent: list[float]
    """Latencies (ms) of orders sent from ``concurrency`` connections at once."""
    errors: int
    """Timed orders that did not fill."""


async def drive(
    url: str,
    token: str,
    accounts: list[str],
    n: int,
    warmup: int,
    concurrency: int,
    phase: Callable[[], None] = lambda: None,
) -> Drive:
    """``warmup`` orders (not timed), then ``min(n, 1000)`` one at a time, then ``n`` from
    ``concurrency`` keep-alive connections, as the in-process run does; ``phase`` is called
    as the concurrent run starts."""
    host = urlsplit(url).netloc
    callers = [await Caller.open(url) for _ in range(concurrency)]
    latencies: list[float] = []
    errors = 0

    async def run(count: int, timed: bool, width: int) -> None:
        nonlocal errors
        counter = iter(range(count))

        async def worker(w: int) -> None:
            nonlocal errors
            caller = callers[w]
            for i in counter:
                side = "buy" if i % 2 == 0 else "sell"
                body = (
                    f'{{"account":"{accounts[(i + w) % len(accounts)]}","symbol":"EURUSD",'
                    f'"side":"{side}","volume":0.01,"magic":4242}}'
                ).encode()
                t0 = time.perf_counter_ns()
                status, answer = await caller.post("/v1/orders/market", host, token, body)
                if timed:
                    latencies.append((time.perf_counter_ns() - t0) / 1e6)
                    if status != 200 or b'"status":"filled"' not in answer:
                        errors += 1

        await asyncio.gather(*(worker(w) for w in range(width)))

    try:
        await run(warmup, timed=False, width=concurrency)
        await run(min(n, 1000), timed=True, width=1)
        serial, latencies = latencies, []
        phase()  # the bridge's CPU is measured over the concurrent run from here
        await run(n, timed=True, width=concurrency)
    finally:
        for caller in callers:
            await caller.close()
    return Drive(serial, latencies, errors)


def main(
    url: str,
    token: str,
    accounts: list[str],
    n: int,
    warmup: int,
    concurrency: int,
    conn: Connection,
) -> None:
    def phase() -> None:
        conn.send("concurrent")

    conn.send(asyncio.run(drive(url, token, accounts, n, warmup, concurrency, phase)))
