#!/usr/bin/env python3
"""Upload benchmark: streamer put/post against curl -T/-F, over loopback, same receiver.

Sends a real (non-sparse) file to a receiver that streams the body to disk (nginx, or
`streamer serve`), alternating tools within each round: wall time, CPU s (user+sys), peak
RSS. Helpers come from bench_download.py. See bench/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import Run, work_dir, write_report
from bench_download import (  # after the sys.path insert
    BUILTIN,
    GiB,
    MiB,
    clear,
    ensure_payload,
    fill,
    measure,
    parse_size,
    print_table,
    stop,
    summarize,
)

OPS = ("put", "post")
TOOLS = ("streamer", "curl")
# -P: no current directory on sys.path, which `-m` would put before PYTHONPATH; run from a
# checkout's root, both streamer rows would otherwise import that checkout's code.
COMMANDS = {
    ("put", "streamer"): "{python} -P -m streamer put {file} {url} --no-progress -q",
    ("put", "curl"): "curl -s -T {file} {url}",
    ("post", "streamer"): "{python} -P -m streamer post {url} -F file=@{file} --no-progress -q",
    ("post", "curl"): "curl -s -F file=@{file} {url}",
    # The same commands on an earlier checkout (--prev DIR): PYTHONPATH from --prev.
    ("put", "streamer-prev"): "env PYTHONPATH={prev} {python} -P -m streamer put {file} {url}"
    " --no-progress -q",
    ("post", "streamer-prev"): "env PYTHONPATH={prev} {python} -P -m streamer post {url}"
    " -F file=@{file} --no-progress -q",
}
# The floor (--tools raw,...): the least a client can do, `_rawput.py` under `python3 -S`
# (no site packages); each variant changes one socket or sendfile setting.
RAWPUT = Path(__file__).resolve().parent / "_rawput.py"
RAW_VARIANTS = {
    "raw": "",
    "raw-whole": "--count 2147479552",  # one sendfile call (Linux caps one at 2 GiB - 4 KiB)
    "raw-64k": "--count 65536",
    "raw-cork": "--cork",
    "raw-sndbuf": "--sndbuf 4194304",
    "raw-nagle": "--nodelay 0",
    "raw-nonblock": "--nonblock",
    "raw-expect": "--expect",  # Expect: 100-continue, as curl and streamer send for >= 1 MiB
    "raw-copy": "--copy --expect",  # read into a 1 MiB buffer and send it, as curl does
}
for _name, _extra in RAW_VARIANTS.items():
    COMMANDS["put", _name] = f"python3 -S {RAWPUT} {{file}} {{url}} {_extra}".strip()
    COMMANDS["post", _name] = f"python3 -S {RAWPUT} {{file}} {{url}} --form {_extra}".strip()
NGINX = "{nginx} -p {prefix} -e {prefix}/error.log -c {prefix}/nginx.conf"
UPLOAD_DIR = "up"  # under www/: where PUT targets go (and the built-in server's POST files)


@dataclass
class UploadRun(Run):
    op: str = ""


@dataclass
class Receiver:
    """Where each operation sends its body and where the received bytes land."""

    kind: str
    base: str  # http://127.0.0.1:PORT
    put_dir: Path  # PUT /up/NAME lands in put_dir/NAME (both receivers)
    form_dir: Path  # POST: builtin stores the file part here; nginx stores the raw body here

    def url(self, op: str, tool: str) -> str:
        if op == "put":
            return f"{self.base}/{UPLOAD_DIR}/{tool}.bin"
        return f"{self.base}/form" if self.kind == "nginx" else f"{self.base}/{UPLOAD_DIR}/"


@dataclass
class Bench:
    args: argparse.Namespace
    src: Path
    digest: str
    rx: Receiver


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=parse_size, default=2 * GiB, help="file size (2GiB)")
    p.add_argument("--runs", type=int, default=5, help="runs per tool and operation (5)")
    p.add_argument("--receiver", choices=["nginx", "builtin"], default="nginx")
    p.add_argument("--ops", default="put,post", help="comma list of put, post (both)")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each command (1)")
    p.add_argument("--keep-dir", type=Path, help="work in DIR and keep it (source is reused)")
    p.add_argument("--json", type=Path, help="write all runs and the summary here")
    p.add_argument("--python", default=sys.executable, help="interpreter for streamer")
    p.add_argument("--prev", help="PYTHONPATH of an earlier streamer: adds a streamer-prev row")
    p.add_argument(
        "--tools",
        default=",".join(TOOLS),
        help=f"comma list of streamer, curl and the floor's {', '.join(RAW_VARIANTS)}",
    )
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per run (120)")
    p.add_argument("--settle", type=float, default=2.0, help="pause after each run's sync (2)")
    p.add_argument("--budget", type=float, default=1800.0, help="start no run after this (s)")
    p.add_argument(
        "--body-buffer",
        default="1m",
        help="nginx's client_body_buffer_size (1m; 1020k keeps its writes off 1 MiB boundaries)",
    )
    args = p.parse_args(argv)
    args.ops = [op.strip() for op in args.ops.split(",") if op.strip()]
    if not args.ops or any(op not in OPS for op in args.ops):
        p.error(f"--ops: choose from {', '.join(OPS)}")
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if not args.tools or any(("put", t) not in COMMANDS for t in args.tools):
        p.error("--tools: choose from streamer, curl, " + ", ".join(RAW_VARIANTS))
    return args


def nginx_conf(work: Path, www: Path, port: int, body_buffer: str = "1m") -> str:
    """PUT: the dav module. POST: the body kept as a file (client_body_in_file_only on), read
    in full before proxying to a socket that does not exist; the 502 becomes a 200.

    nginx writes the body to its temp file one full `body_buffer` at a time. With 1m and no
    body bytes read with the head (an `Expect: 100-continue` request has none), every write is
    1 MiB at a 1 MiB boundary, which this VM's page cache takes ~4x slower than writes off
    those boundaries (`_pagecache.py`). 1020k keeps nginx's writes off those boundaries; it
    made every client fast in one run and changed nothing in another (bench/README.md,
    "Uploads: what the receiver costs"), so the default stays 1m, as in the older rows."""
    ng = work / "nginx"
    user = "user root;\n" if os.geteuid() == 0 else ""  # else workers run as nobody
    temps = "".join(
        f"  {kind}_temp_path {ng / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"daemon off;\n{user}worker_processes 1;\npid {ng / 'nginx.pid'};\n"
        # crit: each POST logs the (intended) failed connect to the missing upstream
        f"error_log {ng / 'error.log'} crit;\nevents {{ worker_connections 64; }}\n"
        f"http {{\n  access_log {ng / 'access.log'};\n{temps}"
        f"  client_max_body_size 0;\n  client_body_buffer_size {body_buffer};\n"
        f"  server {{\n    listen 127.0.0.1:{port};\n    root {www};\n"
        "    location = /ready { return 204; }\n"
        f"    location /{UPLOAD_DIR}/ {{ dav_methods PUT; create_full_put_path on; }}\n"
        "    location = /form {\n      client_body_in_file_only on;\n"
        f"      proxy_pass http://unix:{ng / 'no-such.sock'}:/;\n"
        "      error_page 502 =200 @stored;\n    }\n"
        '    location @stored { return 200 "stored\\n"; }\n  }\n}\n'
    )


def receiver_command(args: argparse.Namespace, work: Path, www: Path, port: int) -> list[str]:
    if args.receiver == "builtin":
        return fill(BUILTIN, python=args.python, www=www, port=port)
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        sys.exit("nginx not found (apt-get install nginx-light), or use --receiver builtin")
    done = subprocess.run([nginx, "-V"], capture_output=True, text=True, check=False)
    if "http_dav_module" not in done.stderr:
        sys.exit("this nginx has no dav module (PUT); use --receiver builtin")
    prefix = work / "nginx"
    (prefix / "client_body").mkdir(parents=True, exist_ok=True)
    (prefix / "nginx.conf").write_text(nginx_conf(work, www, port, args.body_buffer))
    return fill(NGINX, nginx=nginx, prefix=prefix)


def wait_ready(proc: subprocess.Popen[bytes], port: int, kind: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"receiver exited with {proc.returncode}; see its log in the work dir")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("HEAD", "/ready" if kind == "nginx" else f"/{UPLOAD_DIR}/")
            status = conn.getresponse().status
            conn.close()
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit("receiver did not answer within 20 s")


@contextmanager
def running_receiver(args: argparse.Namespace, work: Path, www: Path) -> Iterator[Receiver]:
    with socket.socket() as sock:  # a free port; the tiny race is harmless here
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    cmd = receiver_command(args, work, www, port)
    with (work / f"{args.receiver}.log").open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        wait_ready(proc, port, args.receiver)
        up = www / UPLOAD_DIR
        form = work / "nginx" / "client_body" if args.receiver == "nginx" else up
        yield Receiver(args.receiver, f"http://127.0.0.1:{port}", up, form)
    finally:
        stop(proc)


def sha256_range(path: Path, start: int, length: int) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        f.seek(start)
        while length > 0:
            block = f.read(min(4 * MiB, length))
            if not block:
                break
            digest.update(block)
            length -= len(block)
    return digest.hexdigest()


def locate_form_file(raw: Path, size: int) -> tuple[int, str]:
    """Offset of the file part's content in a raw one-part multipart body, or an error.

    The body is ``--B CRLF headers CRLF CRLF content CRLF --B-- CRLF``."""
    with raw.open("rb") as f:
        head = f.read(64 << 10)
        total = os.fstat(f.fileno()).st_size
        delimiter = head.split(b"\r\n", 1)[0]
        start = head.find(b"\r\n\r\n") + 4
        tail = b"\r\n" + delimiter + b"--\r\n"
        if not delimiter.startswith(b"--") or start < 4:
            return 0, "raw body is not multipart"
        if total - len(tail) - start != size:
            return 0, f"file part of {total - len(tail) - start} bytes, not {size}"
        f.seek(total - len(tail))
        if f.read() != tail:
            return 0, "raw body does not end with the closing delimiter"
    return start, ""


def check_received(op: str, tool: str, b: Bench, with_hash: bool) -> str:
    size, rx = b.args.size, b.rx
    start = 0
    if op == "put":
        got = rx.put_dir / f"{tool}.bin"
    elif rx.kind == "builtin":
        got = rx.form_dir / b.src.name
    else:  # nginx keeps the raw body under a numbered name in its client_body temp dir
        files = [p for p in rx.form_dir.iterdir() if p.is_file()]
        if len(files) != 1:
            return f"{len(files)} body files in {rx.form_dir}, not 1"
        got = files[0]
        start, error = locate_form_file(got, size)
        if error:
            return error
    if not got.exists():
        return f"no received file {got.name}"
    if start == 0 and (have := got.stat().st_size) != size:
        return f"received {have} bytes, not {size}"
    if with_hash and sha256_range(got, start, size) != b.digest:
        return "bad sha256"
    return ""


def one_run(op: str, tool: str, rnd: int, b: Bench) -> UploadRun:
    """One timed upload; round 0 also checks the sha256 of what the receiver stored."""
    a, rx = b.args, b.rx
    cmd = fill(
        COMMANDS[op, tool], python=a.python, file=b.src, url=rx.url(op, tool), prev=a.prev or ""
    )
    status, wall, cpu, rss = measure(cmd, a.timeout, b.src.parent.parent / "rss.txt")
    if status:
        error = "timed out" if wall >= a.timeout else f"exit status {status}"
    else:
        error = check_received(op, tool, b, with_hash=rnd == 0)
    for d in {rx.put_dir, rx.form_dir}:
        clear(d)
    time.sleep(a.settle)
    return UploadRun(tool, rnd, not error, wall, cpu, rss, error, op=op)


def run_all(b: Bench) -> list[UploadRun]:
    """`runs` rounds of every (op, tool); odd rounds in reverse, so none always goes first."""
    args = b.args
    deadline, runs = time.monotonic() + args.budget, list[UploadRun]()
    tools = (*args.tools, *(("streamer-prev",) if args.prev else ()))
    pairs = [(op, tool) for op in args.ops for tool in tools]
    for _ in range(args.warmup):  # page cache, .pyc files, the first write-back: not timed
        for op, tool in pairs:
            if not (run := one_run(op, tool, -1, b)).ok:
                print(f"warm-up {op} {tool} FAILED: {run.error}", file=sys.stderr)
    for rnd in range(args.runs):
        for op, tool in pairs if rnd % 2 == 0 else reversed(pairs):
            if time.monotonic() > deadline:
                print("budget spent; stopping early", file=sys.stderr)
                return runs
            run = one_run(op, tool, rnd, b)
            note = "" if run.ok else f"  FAILED: {run.error}"
            line = f"{run.wall_s:7.2f} s  cpu {run.cpu_s:6.2f} s  rss {run.rss_mib:6.1f} MiB"
            print(f"round {rnd + 1} {op:4} {tool:9}{line}{note}", file=sys.stderr)
            runs.append(run)
    return runs


def check_tools(python: str) -> None:
    if not shutil.which("curl"):
        sys.exit("curl not found on PATH")
    for sub in ("put", "post"):
        cmd = [python, "-m", "streamer", sub, "--help"]
        done = subprocess.run(cmd, capture_output=True, timeout=30, check=False)
        if done.returncode:
            sys.exit(f"`{python} -m streamer {sub}` does not work")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(args.python)
    with work_dir(args.keep_dir, "bench-ul-") as work:
        src_dir, www = work / "src", work / "www"
        for d in (src_dir, www / UPLOAD_DIR):
            d.mkdir(parents=True, exist_ok=True)
        clear(www / UPLOAD_DIR)
        digest = ensure_payload(src_dir, args.size)
        with running_receiver(args, work, www) as rx:
            clear(rx.form_dir)
            runs = run_all(Bench(args, src_dir / "payload.bin", digest, rx))
    summary = {op: summarize([r for r in runs if r.op == op], args.size) for op in args.ops}
    print(f"\n{args.size / MiB:.0f} MiB to {args.receiver} on 127.0.0.1, {args.runs} runs each")
    for op in args.ops:
        print(f"\n{op.upper()}")
        print_table(summary[op])
    if args.json:
        write_report(args.json, args, {"summary": summary, "runs": [asdict(r) for r in runs]})
    return 0 if runs and all(r.ok for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
