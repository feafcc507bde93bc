"""Helpers shared by several test modules (plain functions and classes, no fixtures).

- `ENV`, `Run`, `spawn`, `finish`, `streamer`, `kill`, `wait_for`: run ``python -m streamer``
  as a real child process (asyncio) and collect its exit code and output; `run_streamer` is
  the blocking equivalent that returns a `subprocess.CompletedProcess`.
- `one_error_line`: the usual check of a failed command's stderr.
- `peak_rss`: the peak RSS of a child command, measured by a bare launcher interpreter.
- `ThreadedServer`: the built-in server on its own event loop in a background thread.
- `running_slow_server`: a started `tests.slow_server.SlowServer`, stopped afterwards.
- `closed_port`, `file_digest`, `url_of`, `assert_nothing_left`: small shared utilities.
- `takes_o_direct`, `o_direct_dir`: a directory whose file system takes O_DIRECT writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp.test_utils import TestServer

from streamer.server.app import running_server
from streamer.storage.files import part_path
from tests.slow_server import SlowServer

MIB = 1 << 20
RUN_TIMEOUT = 30.0  # seconds one command may take before the test kills it


def _child_env() -> dict[str, str]:
    """This environment without proxy settings or a CA bundle override, so that children talk
    to 127.0.0.1 directly, whatever proxy the machine running the tests has; 80 columns."""
    env = {
        k: v
        for k, v in os.environ.items()
        if "proxy" not in k.lower() and k.lower() != "ssl_cert_file"
    }
    env["COLUMNS"] = "80"
    return env


ENV = _child_env()


# --- the CLI as a child process ----------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one command did."""

    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        """The non-blank lines of stderr."""
        return [line for line in self.err.splitlines() if line.strip()]

    def json(self) -> dict[str, Any]:
        """stdout parsed as one JSON object."""
        doc = json.loads(self.out)
        assert isinstance(doc, dict)
        return doc


@contextlib.contextmanager
def sigint_inherited_as_default() -> Iterator[None]:
    """A child started from a context that ignores SIGINT would inherit SIG_IGN; undo that."""
    old = signal.getsignal(signal.SIGINT)
    if old is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if old is signal.SIG_IGN:
            signal.signal(signal.SIGINT, old)


async def spawn(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    """Start ``python -m streamer ARGS`` with piped output; the caller must reap it.

    ``env`` adds variables to the child's environment (`ENV`)."""
    with sigint_inherited_as_default():
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streamer",
            *args,
            cwd=cwd,
            env={**ENV, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )


async def finish(proc: asyncio.subprocess.Process, timeout: float = RUN_TIMEOUT) -> Run:
    """Collect a child's exit code and output; kill it if it outlives `timeout`."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        kill(proc)
        await proc.communicate()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


async def streamer(
    *args: str,
    cwd: Path | None = None,
    timeout: float = RUN_TIMEOUT,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``python -m streamer ARGS`` to completion (``env``: added variables)."""
    return await finish(await spawn(*args, cwd=cwd, env=env), timeout)


def kill(proc: asyncio.subprocess.Process) -> None:
    """SIGKILL a child that is still running."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


async def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 20.0) -> None:
    """Poll `predicate()` every 10 ms until true; fail the test after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def run_streamer(
    *args: str | Path, timeout: float = RUN_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m streamer ARGS`` (blocking) and capture its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "streamer", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


def one_error_line(run: Run, rc: int, *fragments: str) -> str:
    """The run failed with `rc` and printed exactly one line on stderr containing each
    fragment (the lines as `run.err_lines` counts them); that line."""
    assert "Traceback" not in run.err, run.err
    assert run.rc == rc, run
    assert len(run.err_lines) == 1, run.err
    line = run.err_lines[0]
    assert line.startswith("streamer: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


# --- peak RSS of a child -------------------------------------------------------------------------

# Why a launcher: subprocess.Popen forks with vfork (or fork), and Linux records the high-water
# RSS of the mm a process leaves at exec() in its ru_maxrss. Started straight from pytest, the
# child's ru_maxrss would be at least pytest's own RSS (measured: `python -c pass` reports 211 MiB
# under a parent holding 200 MiB). So a bare interpreter (-I -S, a few MiB) forks and execs the
# command, reaps it with os.wait4 and reports that rusage, with its own VmHWM as the bound on
# what it could have added. The child's stdout and stderr go to the log file (or /dev/null).
LAUNCHER = r"""
import json, os, signal, sys, time
argv, log, timeout = json.loads(sys.argv[1]), sys.argv[2], float(sys.argv[3])
pid = os.fork()
if pid == 0:
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.execv(argv[0], argv)
    finally:
        os._exit(127)
deadline = time.monotonic() + timeout
while True:
    got, status, usage = os.wait4(pid, os.WNOHANG)
    if got == pid:
        break
    if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        got, status, usage = os.wait4(pid, 0)
        break
    time.sleep(0.02)
with open("/proc/self/status") as f:
    hwm = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(json.dumps({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
                  "launcher_hwm_kib": hwm, "timed_out": time.monotonic() > deadline}))
"""


@dataclass(frozen=True)
class Peak:
    """What the launcher reported about one child."""

    rc: int
    maxrss_kib: int  # the child's own peak RSS (Linux reports KiB)
    launcher_kib: int  # the launcher's own peak RSS
    timed_out: bool


def peak_rss(
    cmd: list[str], timeout: float, log: Path | None = None, env: dict[str, str] | None = None
) -> Peak:
    """Run `cmd` under the launcher (stdout and stderr to `log`, else /dev/null), killed after
    `timeout` seconds; fails the test if the launcher itself fails. ``env``: added variables."""
    launch = [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(cmd)]
    launch += [str(log) if log is not None else os.devnull, str(timeout)]
    proc = subprocess.run(
        launch,
        capture_output=True,
        text=True,
        env={**ENV, **(env or {})},
        timeout=timeout + 15,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    return Peak(
        rc=int(report["rc"]),
        maxrss_kib=int(report["maxrss_kib"]),
        launcher_kib=int(report["launcher_hwm_kib"]),
        timed_out=bool(report["timed_out"]),
    )


# --- servers -------------------------------------------------------------------------------------


class ThreadedServer:
    """`running_server(root)` on its own event loop in a background thread (for sync tests and
    for child processes); ``with ThreadedServer(root) as base:`` gives its base URL."""

    def __init__(self, root: Path, *, max_upload: int | None = None, name: str = "test-server"):
        self.root = root
        self.base = ""
        self._max_upload = max_upload
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_server(self.root, max_upload=self._max_upload) as base:
                self.base = base
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def __enter__(self) -> str:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("server thread did not start in 10 s")
        if self._error is not None:
            raise self._error
        return self.base

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
        assert not self._thread.is_alive(), "server thread did not stop"


@contextlib.asynccontextmanager
async def running_slow_server() -> AsyncIterator[SlowServer]:
    """A started `tests.slow_server.SlowServer`, stopped afterwards."""
    server = await SlowServer().start()
    try:
        yield server
    finally:
        await server.stop()


# --- small utilities -----------------------------------------------------------------------------


def closed_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def file_digest(path: Path) -> str:
    """sha256 (hex) of a file, read a MiB at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.hexdigest()


def url_of(server: TestServer, path: str) -> str:
    """The URL of `path` on an aiohttp test server."""
    return str(server.make_url(path))


def assert_nothing_left(target: Path) -> None:
    """Neither the target nor its partial exists."""
    assert not target.exists()
    assert not part_path(target).exists()


@contextlib.asynccontextmanager
async def app_servers() -> AsyncIterator[Callable[[Any], Any]]:
    """``server = await serve(app)``: aiohttp apps started on 127.0.0.1 as asked; every one is
    closed when the block ends (the body of the farm/origin fixtures)."""
    servers: list[TestServer] = []

    async def serve(app: Any) -> TestServer:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    try:
        yield serve
    finally:
        for server in servers:
            await server.close()


def takes_o_direct(directory: Path) -> bool:
    """Whether files in `directory` open with O_DIRECT (tmpfs before Linux 6.6: EINVAL)."""
    probe = directory / ".o_direct_probe"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_DIRECT, 0o600)
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
        return False
    finally:
        probe.unlink(missing_ok=True)
    os.close(fd)
    return True


@contextlib.contextmanager
def o_direct_dir(tmp_path: Path) -> Iterator[Path]:
    """`tmp_path` when its file system takes O_DIRECT, else a temporary directory in the
    checkout (on disk where /tmp is an old tmpfs); fails when neither takes it."""
    if takes_o_direct(tmp_path):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir=Path(__file__).resolve().parent.parent) as name:
        assert takes_o_direct(Path(name)), "no directory here takes O_DIRECT writes"
        yield Path(name)
