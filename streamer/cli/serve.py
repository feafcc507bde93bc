"""`streamer serve`: the built-in server on the command line, until Ctrl-C.

It also takes uploads (PUT of a file, POST of a multipart form into a directory), each body
bounded by ``--max-upload``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from ..server.app import serve
from ..sync import run


def run_serve(args: argparse.Namespace) -> int:
    root = Path(args.directory)
    if not root.is_dir():
        raise UsageError(f"not a directory: {root}", path=str(root))

    def ready(base_url: str) -> None:
        print(f"serving {root.resolve()} at {base_url}", file=sys.stderr, flush=True)

    run(
        serve(
            root,
            args.host,
            args.port,
            ready=ready,
            allow_remote=args.allow_remote,
            max_upload=args.max_upload,
        )
    )
    return 0
