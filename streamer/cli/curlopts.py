"""curl's options that shape a command's output and conditions: -s/-S/-f, -w, -z, -C -,
--create-dirs; each either honoured in a mode or refused there up front (exit 2)."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .output import say

if TYPE_CHECKING:
    from datetime import datetime


def add_output_options(p: argparse.ArgumentParser) -> None:
    """-s/-S/-f/-w, as curl has them, for every command that talks to a server."""
    p.add_argument(
        "-s", "--silent", action="store_true", help="no progress, summary or error line (curl -s)"
    )
    p.add_argument("-S", "--show-error", action="store_true", help="with -s: still print errors")
    # streamer always fails on an HTTP status >= 400 (exit 22, nothing written): -f is that.
    p.add_argument("-f", "--fail", action="store_true", help="accepted for curl: always on")
    p.add_argument(
        "-w",
        "--write-out",
        metavar="FORMAT",
        help="print FORMAT on stdout when done: %%{http_code} %%{size_download} %%{time_total}"
        " %%{url_effective} %%{exitcode}, \\n",
    )


def add_get_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-C",
        "--continue-at",
        metavar="-",
        help="'-' (the default anyway): resume a partial download where it stopped",
    )
    p.add_argument(
        "--create-dirs", action="store_true", help="create the output's missing directories"
    )
    p.add_argument(
        "-z",
        "--time-cond",
        metavar="DATE|FILE",
        help="only if modified since DATE or FILE's mtime (-DATE: only if not modified since)",
    )


def apply_silence(args: argparse.Namespace) -> None:
    """-s means quiet (no bar, no summary); errors are silenced too unless -S."""
    if getattr(args, "silent", False):
        args.quiet = True


_VARIABLE = re.compile(r"%\{([a-z_]+)\}|%%|\\[nrt\\]")
_ESCAPES = {"\\n": "\n", "\\r": "\r", "\\t": "\t", "\\\\": "\\", "%%": "%"}


def write_out(fmt: str, values: dict[str, Any]) -> str:
    """curl's -w text: %{name} replaced from `values` (unknown names give ''), \\n and the
    like unescaped, everything else as written."""

    def one(m: re.Match[str]) -> str:
        if m.group(1) is None:
            return _ESCAPES[m.group(0)]
        value = values.get(m.group(1))
        return "" if value is None else str(value)

    return _VARIABLE.sub(one, fmt)


def write_out_values(
    *, status: int | None, size: int, elapsed: float, url: str, code: int
) -> dict[str, Any]:
    return {
        "http_code": f"{status or 0:03d}",
        "response_code": f"{status or 0:03d}",
        "size_download": size,
        "time_total": f"{elapsed:.6f}",
        "url_effective": url,
        "exitcode": code,
    }


def emit_write_out(
    args: argparse.Namespace, outcome: tuple[int | None, int, float, str, int]
) -> None:
    """-w: (status, size, started, url, exit code) of the transfer, formatted on stdout."""
    if getattr(args, "write_out", None) is None:
        return
    status, size, started, url, code = outcome
    values = write_out_values(
        status=status, size=size, elapsed=time.monotonic() - started, url=url, code=code
    )
    sys.stdout.write(write_out(args.write_out, values))
    sys.stdout.flush()


def time_cond_headers(text: str | None) -> dict[str, str]:
    """-z: If-Modified-Since from a date or a file's mtime; a leading '-' for
    If-Unmodified-Since (RFC 9110 13.1.3, 13.1.4). An existing file wins over a date."""
    if text is None:
        return {}
    import email.utils  # -z only: email and datetime are start-up otherwise

    name = "If-Modified-Since"
    if text.startswith("-"):
        name, text = "If-Unmodified-Since", text[1:]
    when = _file_time(text) or _parse_date(text)
    if when is None:
        # curl warns and goes on unconditionally, so `-z FILE -o FILE` works on the first run.
        say(f"streamer: -z {text!r}: not a date and not a file; no condition")
        return {}
    return {name: email.utils.format_datetime(when, usegmt=True)}


def _file_time(text: str) -> datetime | None:
    from datetime import UTC, datetime

    try:
        mtime = os.stat(text).st_mtime
    except (OSError, ValueError):
        return None
    return datetime.fromtimestamp(int(mtime), UTC)


def _parse_date(text: str) -> datetime | None:
    import email.utils
    from datetime import UTC, datetime

    try:
        when = email.utils.parsedate_to_datetime(text)  # RFC 9110 5.6.7 HTTP-date
    except (TypeError, ValueError, IndexError):
        try:
            when = datetime.fromisoformat(text)  # 2026-12-01 or 2026-12-01T10:00:00
        except ValueError:
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def check_get_modes(args: argparse.Namespace) -> None:
    """Refuse, before any request, a curl option that the chosen mode cannot honour."""
    if args.continue_at is not None and args.continue_at != "-":
        raise UsageError(
            f"-C {args.continue_at}: only '-C -' is supported (resume from the partial file)"
        )
    if args.output == "-":
        for given, option in (
            (args.json, "--json"),
            (args.split > 1, "--split"),
            (args.no_clobber, "--no-clobber"),
            (args.wait_lock is not None, "--wait-lock"),
        ):
            if given:
                raise UsageError(f"{option} cannot be used with -o - (stdout)")


def create_dirs(args: argparse.Namespace) -> None:
    """--create-dirs: make the directory the output goes into (mode 0750 like curl's 0750)."""
    if not args.create_dirs:
        return
    if args.output not in (None, "-"):
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    elif args.output_dir is not None:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
