"""CPU of one chunked body made of one-byte chunks (issue 10): the Dechunker alone, the lane
and the full engine, each against a server in a child process on 127.0.0.1.

    python bench/bench_chunked.py [--size 1900000]

Prints CPU seconds of this process (the client side only) for each path.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import subprocess
import sys
import time
from pathlib import Path

from streamer import Client
from streamer.core.http1 import Dechunker, simple_request
from streamer.lane.connection import Lane, Timeouts

SERVER = r"""
import socket, sys
size = int(sys.argv[1])
body = bytes(range(256)) * (size // 256 + 1)
wire = b"".join(b"1\r\n%c\r\n" % b for b in body[:size]) + b"0\r\n\r\n"
head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(head + wire)
    c.close()
"""


def wire_of(size: int) -> bytes:
    body = bytes(range(256)) * (size // 256 + 1)
    return b"".join(b"1\r\n%c\r\n" % b for b in body[:size]) + b"0\r\n\r\n"


def dechunk_only(size: int) -> float:
    wire, dechunker, started = wire_of(size), Dechunker(), time.process_time()
    for at in range(0, len(wire), 65536):
        dechunker.feed(wire[at : at + 65536])
    assert dechunker.done
    return time.process_time() - started


async def lane(url: str, size: int) -> float:
    origin, target = simple_request(url) or (None, "")
    assert origin is not None
    got = bytearray()
    client = Lane(Timeouts(10.0, 60.0, None), ssl.create_default_context)
    started = time.process_time()
    try:
        await client.get(origin, target, [], sink=got.extend, max_body=size + 1, url=url)
    finally:
        client.close()
    assert len(got) == size
    return time.process_time() - started


async def engine(url: str, size: int) -> float:
    async with Client(trust_env=False, read_timeout=60.0) as client:
        started = time.process_time()
        result = await client.fetch(url)
        assert len(result.body) == size
        return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_900_000)
    size = parser.parse_args().size
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(size)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        url = f"http://127.0.0.1:{server.stdout.readline().strip()}/x"
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _common import banner

        print(banner(f"{size} bytes of one-byte chunks (client CPU seconds, one run each)"))
        print(f"  Dechunker alone: {dechunk_only(size):.2f}")
        print(f"  lane:            {asyncio.run(lane(url, size)):.2f}")
        print(f"  full engine:     {asyncio.run(engine(url, size)):.2f}")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
