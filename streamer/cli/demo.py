"""`streamer demo`: the main job end to end with no internet.

Generates a file (1 GiB by default), serves it with the built-in server on 127.0.0.1, downloads
it with a real `streamer get` child process (progress bar, checksum) that is stopped part-way
and then resumed, uploads it back with `streamer put`, then once more as a resumable tus upload
(`streamer put --tus` to the server's ``/files/``) that is stopped part-way and resumed, and
reports bytes, time and each child's peak memory, measured by the kernel (``wait4``'s
ru_maxrss).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..core.sizes import format_size
from ..core.tus_server import TUS_DIR
from ..errors import UsageError

BLOCK = 1 << 20


def make_payload(path: Path, size: int) -> str:
    """Write `size` bytes of incompressible data and return "sha256:<hex>".

    One random MiB is repeated with a block counter mixed in, so every block differs (a server
    or client that splices blocks would be caught) without paying for `size` bytes of urandom.
    """
    block = bytearray(os.urandom(BLOCK))
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        written, n = 0, 0
        while written < size:
            block[:8] = n.to_bytes(8, "little")
            piece = memoryview(block)[: min(BLOCK, size - written)]
            out.write(piece)
            digest.update(piece)
            written += len(piece)
            n += 1
    return f"sha256:{digest.hexdigest()}"


@contextmanager
def server_in_thread(root: Path) -> Iterator[str]:
    """The built-in server on its own thread and loop; yields its base URL."""
    ready: list[str] = []
    started = threading.Event()
    stop: list[asyncio.Event] = []
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def main() -> None:
        from ..server.app import running_server  # aiohttp: loaded only by the commands using it

        stop.append(asyncio.Event())
        loop_box.append(asyncio.get_running_loop())
        async with running_server(root) as base_url:
            ready.append(base_url)
            started.set()
            await stop[0].wait()

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    if not started.wait(10):
        raise UsageError("the built-in server did not start within 10 s")
    try:
        yield ready[0]
    finally:
        loop_box[0].call_soon_threadsafe(stop[0].set)
        thread.join(10)


# A bare interpreter starts each measured child: Linux carries a parent's peak RSS into a
# child's ru_maxrss at exec, so measuring straight from this (bigger) process would overstate.
_LAUNCHER = (
    "import os,subprocess,sys\n"
    "p=subprocess.Popen(sys.argv[2:])\n"
    "_,st,ru=os.wait4(p.pid,0)\n"
    "open(sys.argv[1],'w').write(f'{ru.ru_maxrss} {os.waitstatus_to_exitcode(st)}')\n"
)


def run_child(
    argv: list[str],
    *,
    stop_when: Callable[[], bool] | None = None,
    mute: bool = False,
    env: dict[str, str] | None = None,
) -> Child:
    """Run `argv` under the launcher; SIGTERM it as soon as `stop_when()` says so. With
    `mute` its stdout is kept (`Child.out`, a line or two) instead of shown."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as report:
        started = time.monotonic()
        launcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, report.name, *argv],
            stdout=subprocess.PIPE if mute else None,
            env=env,
        )
        stopped = False
        while launcher.poll() is None:
            if stop_when is not None and not stopped and stop_when():
                _terminate_child_of(launcher.pid)
                stopped = True
            time.sleep(0.01)
        wall = time.monotonic() - started
        out = launcher.stdout.read().decode(errors="replace") if launcher.stdout else ""
        rss_kib, code = report.read().split()
    return Child(int(code), wall, int(rss_kib) * 1024, out)


def _terminate_child_of(pid: int) -> None:
    """SIGTERM the launcher's child (the streamer process), as a user's Ctrl-C or kill would."""
    with contextlib.suppress(OSError, ValueError):
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        for child in children:
            os.kill(int(child), signal.SIGTERM)


@dataclass(frozen=True)
class Child:
    code: int
    wall: float
    rss: int
    out: str = ""


def run_demo(args: argparse.Namespace) -> int:
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="streamer-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    served, out = work / "served", work / "downloads"
    served.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    try:
        return _demo(served, out, args.size)
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)


def _demo(served: Path, out: Path, size: int) -> int:
    say(f"1/7 generating {format_size(size)} of data in {served} ...")
    checksum = make_payload(served / "payload.bin", size)
    say(f"    {checksum}")
    target = out / "payload.bin"
    with server_in_thread(served) as base_url:
        url = f"{base_url}payload.bin"
        get = [
            sys.executable,
            "-m",
            "streamer",
            "get",
            url,
            "-o",
            str(target),
            "--checksum",
            checksum,
            "--progress",
        ]
        say(f"2/7 built-in server at {base_url}; `streamer get`, stopped (SIGTERM) at ~40% ...")
        first = run_child(get, stop_when=lambda: _size(part_of(target)) >= size * 0.4)
        kept = _size(part_of(target))
        say(
            f"    exit {first.code}; kept {format_size(kept)} in {part_of(target).name} "
            f"with its resume state in {part_of(target).name}.json"
        )
        say("3/7 the same command again: it resumes with Range + If-Range ...")
        second = run_child(get)
        if second.code != 0:
            say(f"download failed with exit code {second.code}")
            return second.code
        got = target.stat().st_size
        say(
            f"    {got:,} bytes ({format_size(got)}) complete, {format_size(got - kept)} "
            f"fetched on resume in {second.wall:.2f} s; checksum verified"
        )
        say(f"    peak memory (RSS) of the downloading process: {format_size(second.rss)}")
        return _upload_back(base_url, target, checksum, served)


def _upload_back(base_url: str, source: Path, checksum: str, served: Path) -> int:
    say("4/7 uploading it back with `streamer put` (streamed from disk) ...")
    put = [
        sys.executable,
        "-m",
        "streamer",
        "put",
        str(source),
        f"{base_url}uploaded.bin",
        "--progress",
        "-q",
    ]
    up = run_child(put, mute=True)  # the server's JSON answer is checked below instead
    if up.code != 0:
        say(f"upload failed with exit code {up.code}")
        return up.code
    sent = source.stat().st_size
    say(
        f"    {format_size(sent)} in {up.wall:.2f} s ({format_size(int(sent / up.wall))}/s); "
        f"peak memory (RSS) of the uploading process: {format_size(up.rss)}"
    )
    say("5/7 checking the server's copy ...")
    same = f"sha256:{_sha256(served / 'uploaded.bin')}" == checksum
    say(f"    {'identical' if same else 'DIFFERENT'}: {checksum}")
    if not same:
        return 1
    return _tus_upload(base_url, source, checksum, served)


def _tus_upload(base_url: str, source: Path, checksum: str, served: Path) -> int:
    """A resumable upload stopped at ~40% and resumed by running the same command again."""
    endpoint = f"{base_url}files/"
    put = [sys.executable, "-m", "streamer", "put", "--tus", str(source), endpoint, "--progress"]
    # The upload URL is remembered under XDG_STATE_HOME: here, the demo's own folder.
    env = {**os.environ, "XDG_STATE_HOME": str(served.parent / "state")}
    size = source.stat().st_size
    say(f"6/7 resumable upload (tus 1.0.0) to {endpoint}, stopped (SIGTERM) at ~40% ...")
    first = run_child(put, stop_when=lambda: _tus_held(served) >= size * 0.4, mute=True, env=env)
    held = _tus_held(served)
    say(f"    exit {first.code}; the server kept {format_size(held)} of it")
    say("7/7 the same command again: HEAD asks the server's offset, PATCH sends only the rest ...")
    second = run_child([*put, "--json"], mute=True, env=env)
    if second.code != 0:
        say(f"resumable upload failed with exit code {second.code}")
        return second.code
    result = json.loads(second.out)
    name = _published_name(result["url"])
    sent = format_size(result["sent"])
    say(f"    resumed at byte {result['resumed_from']:,}; {sent} sent in {second.wall:.2f} s")
    say(f"    peak memory (RSS) of the uploading process: {format_size(second.rss)}")
    same = f"sha256:{_sha256(served / name)}" == checksum
    verdict = "identical" if same else "DIFFERENT"
    say(f"    published as {name} (an existing file is never replaced); {verdict}: {checksum}")
    return 0 if same else 1


def _tus_held(served: Path) -> int:
    """Bytes the server holds of uploads in progress (its data files in the tus folder)."""
    with contextlib.suppress(OSError):
        return sum(p.stat().st_size for p in (served / TUS_DIR).iterdir() if p.suffix == "")
    return 0


def _published_name(upload_url: str) -> str:
    """Where the server put the finished upload: HEAD's Streamer-Published header."""
    request = urllib.request.Request(upload_url, method="HEAD", headers={"Tus-Resumable": "1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as answer:  # a loopback URL we made
        return str(answer.headers["Streamer-Published"]).lstrip("/")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def part_of(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
