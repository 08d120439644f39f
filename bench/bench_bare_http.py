"""A bare aiohttp POST loop: what HTTP alone costs on this machine, as a yardstick.

A client process POSTs a 13 KB body (the size of a 10 x 10 portfolio update's SignedMessage)
to a server process that reads it and answers 200, from N concurrent tasks over kept-alive
connections, for a fixed time. Nothing is parsed, signed or stored. Prints POSTs per second
and the client's CPU per POST, at concurrency 1 and 10.

    .venv/bin/python bench/bench_bare_http.py [--seconds 4]

A round trip of UFTP is two such POSTs (the request, then the response message), each
answered by a server and sent by a client: this bounds round trips per second from above,
before any XML or signature work.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time

from aiohttp import ClientSession, TCPConnector, web

BODY = b"x" * 13_000
CONCURRENCIES = (1, 10)


def serve(port: int) -> None:
    async def receive(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(text="OK\n")

    app = web.Application()
    app.router.add_post("/message", receive)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def load(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    """(POSTs per second, client CPU seconds per POST)."""
    async with ClientSession(connector=TCPConnector(limit=100)) as session:
        done = 0
        end = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < end:
                async with session.post(
                    url, data=BODY, headers={"Content-Type": "text/xml"}
                ) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                done += 1

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - started), (time.process_time() - cpu) / done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--port", type=int, default=18999)
    options = parser.parse_args(argv)
    server = multiprocessing.get_context("spawn").Process(target=serve, args=(options.port,))
    server.start()
    try:
        url = f"http://127.0.0.1:{options.port}/message"
        for _ in range(100):  # until the server listens
            try:
                asyncio.run(load(url, 1, 0.01))
                break
            except OSError:
                time.sleep(0.05)
        for concurrency in CONCURRENCIES:
            rate, cpu = asyncio.run(load(url, concurrency, options.seconds))
            print(
                f"c={concurrency:<3} {rate:8.0f} POSTs/s   client CPU per POST {cpu * 1e6:6.0f} us"
            )
    finally:
        server.terminate()
        server.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
