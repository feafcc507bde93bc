"""Helpers shared by bench_bulk.py and bench_split.py (see also _common.py).

nginx with keep-alive for many requests (and optionally a per-connection rate limit), a wait for
other benchmarks to finish.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_download import NGINX, fill, stop

# Benchmarks of others that must not run at the same time as ours (pgrep -f patterns).
OTHERS = ("bench_upload.py",)


def nginx_conf(prefix: Path, www: Path, port: int, location_extra: str = "") -> str:
    """One worker, keep-alive for a whole bulk run, no access log, sendfile; all paths inside
    `prefix`. `location_extra` goes into `location /` (e.g. ``limit_rate 20m;``)."""
    user = "user root;\n" if os.geteuid() == 0 else ""  # else workers run as nobody
    temps = "".join(
        f"  {kind}_temp_path {prefix / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n  access_log off;\n{temps}"
        "  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n"
        "  keepalive_timeout 120s;\n  keepalive_requests 1000000;\n"
        "  open_file_cache max=20000 inactive=120s;\n"
        "  default_type application/octet-stream;\n"
        f"  server {{\n    listen 127.0.0.1:{port} backlog=1024;\n    root {www};\n"
        f"    location / {{ {location_extra} }}\n  }}\n}}\n"
    )


def _free_port() -> int:
    with socket.socket() as sock:  # the tiny race is harmless here
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(proc: subprocess.Popen[bytes], port: int, probe: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"nginx exited with {proc.returncode}; see its error.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("HEAD", probe)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("nginx did not answer within 20 s")


@contextmanager
def running_nginx(work: Path, www: Path, probe: str, location_extra: str = "") -> Iterator[str]:
    """Serve `www` on 127.0.0.1; yields the base URL (http://127.0.0.1:PORT). Stopped (its whole
    process group) whatever happens."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        sys.exit("nginx not found (apt-get install nginx-light)")
    prefix = work / "nginx"
    prefix.mkdir(exist_ok=True)
    port = _free_port()
    (prefix / "nginx.conf").write_text(nginx_conf(prefix, www, port, location_extra))
    cmd = fill(NGINX, nginx=nginx, prefix=prefix)
    with (work / "nginx.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        _wait_ready(proc, port, probe)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def others_running() -> list[str]:
    found = []
    for pattern in OTHERS:
        done = subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False)
        if done.returncode == 0:
            found.append(pattern)
    return found


def wait_quiet(poll: float = 10.0, limit: float = 1200.0) -> None:
    """Wait (up to `limit` s) until no other benchmark runs, so that two never measure at once."""
    deadline = time.monotonic() + limit
    announced = False
    while busy := others_running():
        if time.monotonic() > deadline:
            print(f"still running after {limit:.0f} s: {busy}; going on", file=sys.stderr)
            return
        if not announced:
            print(f"waiting for {', '.join(busy)} to finish...", file=sys.stderr)
            announced = True
        time.sleep(poll)
