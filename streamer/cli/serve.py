"""`streamer serve`: the built-in server on the command line, until Ctrl-C.

It also takes uploads (PUT of a file, POST of a multipart form into a directory), each body
bounded by ``--max-upload``, and resumable ones with tus 1.0.0 at ``/files/`` (where
``--max-upload`` is the Tus-Max-Size); see `streamer.server.tus`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import Result, StreamerError, UsageError
from .options import count_arg, port_arg, seconds_arg, size_arg


def run_serve(args: argparse.Namespace) -> int:
    from ..server.app import serve  # aiohttp: loaded only by the commands using it
    from ..sync import run

    root = Path(args.directory)
    if not root.is_dir():
        raise UsageError(f"not a directory: {root}", path=str(root))

    def ready(base_url: str) -> None:
        print(f"serving {root.resolve()} at {base_url}", file=sys.stderr, flush=True)

    try:
        run(
            serve(
                root,
                args.host,
                args.port,
                ready=ready,
                allow_remote=args.allow_remote,
                max_upload=args.max_upload,
                **_guard_options(args),
            )
        )
    except OSError as exc:  # the bind: a busy port, an address not on this machine
        raise StreamerError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            result=Result.CANT_CONNECT,
        ) from None
    return 0


def _guard_options(args: argparse.Namespace) -> dict[str, Any]:
    """--head-timeout and --max-pending when given (the server's defaults otherwise: the
    parser must not import the server, which loads aiohttp)."""
    given = {"head_timeout": args.head_timeout, "max_pending": args.max_pending}
    return {name: value for name, value in given.items() if value is not None}


def add_parser(sub: Any) -> None:
    serve = sub.add_parser(
        "serve", help="serve a directory on 127.0.0.1 (the built-in server; tus uploads at /files/)"
    )
    serve.add_argument("directory", nargs="?", default=".", metavar="DIR")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=port_arg, default=8000)
    serve.add_argument(
        "--allow-remote", action="store_true", help="allow binding to a non-loopback address"
    )
    serve.add_argument(
        "--max-upload",
        type=size_arg,
        metavar="SIZE",
        help="refuse PUT/POST bodies and tus uploads larger than SIZE with 413 (default: no limit)",
    )
    serve.add_argument(
        "--head-timeout",
        type=seconds_arg,
        metavar="SECONDS",
        help="close a connection whose request head is not in after SECONDS (default 20)",
    )
    serve.add_argument(
        "--max-pending",
        type=count_arg,
        metavar="N",
        help="connections waiting for their head at most; the oldest is closed past N (default 64)",
    )
