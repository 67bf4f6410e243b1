"""The execution engine's side of `mtgate bench --http`: market orders over the HTTP API
from a process of its own (as a separate service calls the bridge), timed per order."""

from __future__ import annotations

import asyncio
import time
from multiprocessing.connection import Connection

import httpx


async def drive(
    url: str, token: str, accounts: list[str], n: int, warmup: int, concurrency: int
) -> tuple[list[float], int]:
    """``n`` orders after ``warmup`` (not timed) from ``concurrency`` keep-alive connections;
    returns the latencies (ms) and how many orders did not fill."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def run(count: int, timed: bool) -> None:
            nonlocal errors
            counter = iter(range(count))

            async def worker(w: int) -> None:
                nonlocal errors
                for i in counter:
                    side = "buy" if i % 2 == 0 else "sell"
                    body = (
                        f'{{"account":"{accounts[(i + w) % len(accounts)]}","symbol":"EURUSD",'
                        f'"side":"{side}","volume":0.01,"magic":4242}}'
                    )
                    t0 = time.perf_counter_ns()
                    r = await client.post("/v1/orders/market", content=body, headers=headers)
                    if timed:
                        latencies.append((time.perf_counter_ns() - t0) / 1e6)
                        if r.status_code != 200 or b'"status":"filled"' not in r.content:
                            errors += 1

            await asyncio.gather(*(worker(w) for w in range(concurrency)))

        await run(warmup, timed=False)
        await run(n, timed=True)
    return latencies, errors


def main(
    url: str,
    token: str,
    accounts: list[str],
    n: int,
    warmup: int,
    concurrency: int,
    conn: Connection,
) -> None:
    conn.send(asyncio.run(drive(url, token, accounts, n, warmup, concurrency)))
