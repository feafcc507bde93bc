"""The floor of a 1-file upload: the least a client can do to send FILE to URL (issue 15).

Run as ``python3 -S _rawput.py FILE URL [options]``: standard library only, no site
packages, a blocking socket, the request head then ``os.sendfile`` of the whole file, then
the answer read up to its head. No checks, retries or redirects: a measuring stick for
bench_upload.py's ``raw*`` rows, not a client. Exit status 0 for a 2xx answer.

Options: ``--form`` (a one-part multipart POST, as ``curl -F file=@FILE``), ``--count N``
(bytes per sendfile call, or per read with ``--copy``; default 1 MiB), ``--copy`` (read
into a buffer and send it, as curl does, instead of sendfile), ``--sndbuf N`` (SO_SNDBUF),
``--cork`` (TCP_CORK around head and body), ``--nodelay 0`` (leave Nagle on),
``--nonblock`` (a non-blocking socket and poll(), as an event loop sends), ``--expect``
(Expect: 100-continue, the body after the interim answer), ``--phases`` (print when it
connected, sent the last byte and had the answer, in ms from its start, to stderr).
"""

import os
import select
import socket
import sys
import time


def options(argv):
    opts = {"count": 1 << 20, "sndbuf": 0, "cork": False, "form": False, "nodelay": 1}
    opts["phases"] = opts["nonblock"] = opts["expect"] = opts["copy"] = False
    i = 0
    while i < len(argv):
        name = argv[i].lstrip("-")
        if name in ("cork", "form", "phases", "nonblock", "expect", "copy"):
            opts[name] = True
            i += 1
        else:
            opts[name] = int(argv[i + 1])
            i += 2
    return opts


def sendfile_polled(sock, fd, size, count):
    """As an event loop sends: a non-blocking socket, poll() for POLLOUT when it is full."""
    sock.setblocking(False)
    poller, out, offset = select.poll(), sock.fileno(), 0
    poller.register(out, select.POLLOUT)
    while offset < size:
        try:
            offset += os.sendfile(out, fd, offset, min(count, size - offset))
        except BlockingIOError:
            poller.poll()
    sock.setblocking(True)


def send_copied(sock, f, count):
    """As curl sends a file: read `count` bytes into a buffer, send them, again."""
    buf = bytearray(count)
    view = memoryview(buf)
    while n := f.readinto(buf):
        sock.sendall(view[:n])


def send_head(sock, head, pre, expect):
    """The head and the form's preamble; with `expect`, the head alone first, the rest once
    the interim answer is in."""
    if not expect:
        sock.sendall(head + pre)
        return
    sock.sendall(head)
    interim = b""
    while b"\r\n\r\n" not in interim:
        interim += sock.recv(4096)
    sock.sendall(pre)


def main(argv):
    t0 = time.perf_counter()
    path, url, opts = argv[0], argv[1], options(argv[2:])
    host, _, target = url.split("//", 1)[1].partition("/")
    name, _, port = host.partition(":")
    size = os.stat(path).st_size
    pre = post = b""
    method, ctype = "PUT", "application/octet-stream"
    if opts["form"]:
        b = "----floor0123456789"
        method, ctype = "POST", f"multipart/form-data; boundary={b}"
        pre = (
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{path}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        post = f"\r\n--{b}--\r\n".encode()
    head = (
        f"{method} /{target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: floor\r\nAccept: */*\r\n"
        f"Content-Type: {ctype}\r\nContent-Length: {size + len(pre) + len(post)}\r\n"
        + ("Expect: 100-continue\r\n" if opts["expect"] else "")
        + "\r\n"
    ).encode()
    sock = socket.create_connection((name, int(port or 80)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, opts["nodelay"])
    if opts["sndbuf"]:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, opts["sndbuf"])
    if opts["cork"]:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
    t1 = time.perf_counter()
    send_head(sock, head, pre, opts["expect"])
    with open(path, "rb") as f:
        if opts["copy"]:
            send_copied(sock, f, opts["count"])
        elif opts["nonblock"]:
            sendfile_polled(sock, f.fileno(), size, opts["count"])
        else:
            fd, out, offset = f.fileno(), sock.fileno(), 0
            while offset < size:
                offset += os.sendfile(out, fd, offset, min(opts["count"], size - offset))
    sock.sendall(post)
    if opts["cork"]:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 0)
    t2 = time.perf_counter()
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    t3 = time.perf_counter()
    if opts["phases"]:
        ms = [round((t - t0) * 1000, 1) for t in (t1, t2, t3)]
        print(f"connected {ms[0]} ms, sent {ms[1]} ms, answered {ms[2]} ms", file=sys.stderr)
    return 0 if answer[9:10] == b"2" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
