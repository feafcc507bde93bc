"""Option types and the options shared by commands: sizes, seconds, headers, transfer flags."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.redact import redact_url
from ..core.sizes import parse_size
from ..errors import UsageError
from .curlopts import add_output_options

if TYPE_CHECKING:
    from ..config import ClientConfig
    from ..core.headers import HeaderLines

USAGE_EXIT = 2


def size_arg(text: str) -> int:
    try:
        return parse_size(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def rate_arg(text: str) -> int:
    """A byte rate (--limit-rate): a size of at least one byte per second."""
    value = size_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte/s, not {text!r}")
    return value


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, not {text!r}")
    return value


def count_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text!r}")
    return value


def port_arg(text: str) -> int:
    """A TCP port, 0-65535 (0: any free port)."""
    value = count_arg(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return value


def add_transfer_options(p: argparse.ArgumentParser) -> None:
    """Options shared by every command that talks to a server."""
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra request header (repeatable); 'NAME:' removes one streamer sends, "
        "'NAME;' sends it empty, @FILE reads such lines from FILE",
    )
    add_credential_options(p)
    p.add_argument("--connect-timeout", type=seconds_arg, metavar="SECONDS", default=30.0)
    p.add_argument(
        "--max-time",
        type=seconds_arg,
        metavar="SECONDS",
        help="maximum time for each file's whole transfer (every request of a tus or S3 "
        "upload, of a --split download; per attempt with --retry)",
    )
    p.add_argument(
        "--read-timeout",
        type=seconds_arg,
        metavar="SECONDS",
        default=60.0,
        help="maximum idle time between two reads (default 60)",
    )
    p.add_argument(
        "--speed-limit",
        type=size_arg,
        metavar="BYTES",
        help="abort when slower than this many bytes/s for --speed-time",
    )
    p.add_argument("--speed-time", type=seconds_arg, metavar="SECONDS", default=30.0)
    p.add_argument("--max-redirs", type=count_arg, default=8, metavar="N")
    p.add_argument(
        "--proto-redir-downgrade",
        action="store_true",
        help="allow redirects from https to http (refused by default)",
    )
    p.add_argument("--cacert", metavar="FILE", help="CA bundle to verify the server with")
    p.add_argument("--cert", metavar="FILE", help="client certificate (PEM)")
    p.add_argument("--key", metavar="FILE", help="client certificate's private key (PEM)")
    p.add_argument("-k", "--insecure", action="store_true", help="do not verify certificates")
    p.add_argument("-x", "--proxy", metavar="URL")
    p.add_argument(
        "--noproxy-env",
        action="store_true",
        help="ignore http_proxy/https_proxy/no_proxy from the environment",
    )
    p.add_argument(
        "--retry",
        type=count_arg,
        default=0,
        metavar="N",
        help="retry transient failures N times (0: none); downloads resume",
    )
    p.add_argument(
        "--retry-delay",
        type=seconds_arg,
        metavar="SECONDS",
        help="fixed wait between retries (default: exponential backoff)",
    )
    p.add_argument(
        "--retry-max-time",
        type=seconds_arg,
        metavar="SECONDS",
        help="start no retry after this many seconds",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress and no summary")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--progress",
        action="store_true",
        help="show the progress bar even when stderr is not a terminal",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per transfer on stdout")
    add_output_options(p)


def add_credential_options(p: argparse.ArgumentParser) -> None:
    """curl's -u, -A, -e (sugar over -H lines, see `request_lines`) and --location-trusted."""
    p.add_argument(
        "-u",
        "--user",
        metavar="USER[:PASSWORD]",
        help="HTTP Basic credentials; without :PASSWORD it is asked for on the terminal",
    )
    p.add_argument("-A", "--user-agent", metavar="NAME", help="User-Agent to send ('' sends none)")
    p.add_argument("-e", "--referer", metavar="URL", help="Referer to send")
    p.add_argument(
        "--location-trusted",
        action="store_true",
        help="credentials follow redirects to other origins (uploads: the body too)",
    )


def ask_password(args: argparse.Namespace) -> None:
    """-u USER without :PASSWORD: ask on the terminal (never echoed), as curl does; without a
    terminal on stdin that is a usage error rather than a hang or an empty password."""
    user = getattr(args, "user", None)
    if user is None or ":" in user:
        return
    import sys

    if not sys.stdin.isatty():
        raise UsageError(
            "-u USER without :PASSWORD asks for the password, but stdin is not a terminal; "
            "give -u USER:PASSWORD or an Authorization line with -H @FILE"
        )
    import getpass

    from ..core.text import printable

    try:
        password = getpass.getpass(f"Enter host password for user '{printable(user)}': ")
    except EOFError:
        raise UsageError("no password was given for -u") from None
    args.user = f"{user}:{password}"


def request_lines(args: argparse.Namespace) -> list[str]:
    """The -H lines of a command, -u/-A/-e first as the lines they stand for (a later -H
    about the same name wins, as in curl)."""
    from ..core.headers import option_lines

    return [*option_lines(args.user, args.user_agent, args.referer), *args.header]


def parse_headers(lines: list[str], url: str = "", *, download: bool = False) -> HeaderLines:
    """curl's -H lines (`core.headers`: 'Name: value' adds, 'Name:' removes, 'Name;' sends
    it empty), '@FILE' reading such lines from FILE. A malformed line, an unreadable FILE or
    the removal of a framing field (Host, Content-Length...), or for a `download` of Range or
    If-Range, is a usage error."""
    from ..core.headers import BadHeaderLine, omit_names, parse_lines, refuse_omitting

    try:
        parsed = parse_lines(_expand_files(lines, url))
    except BadHeaderLine as exc:
        # Not echoed: the rest of a malformed line is often a credential ("Authorization
        # Bearer TOKEN"); its first word is enough to find it.
        raise UsageError(
            f"bad header starting {exc.first_word!r}: expected 'Name: value', 'Name:' or "
            "'Name;' (the rest is not shown)",
            url=redact_url(url),
        ) from None
    try:
        omit_names(parsed.omit)
        if download:
            from ..core.ranges import RANGE_NEEDS

            refuse_omitting(parsed.omit, RANGE_NEEDS, "a download cannot resume without it")
    except UsageError as exc:
        raise UsageError(exc.message, url=redact_url(url)) from None
    return parsed


def _expand_files(lines: list[str], url: str) -> list[str]:
    """-H @FILE: FILE's lines in place of the option (CRLF endings and blank lines skipped),
    so that a secret header need not be on the command line."""
    out: list[str] = []
    for line in lines:
        if not line.startswith("@"):
            out.append(line)
            continue
        try:
            text = Path(line[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise UsageError(
                f"cannot read header file {line[1:]!r}: {why}", url=redact_url(url)
            ) from None
        out += [text_line for text_line in text.splitlines() if text_line.strip()]
    return out


def client_config(
    args: argparse.Namespace,
    *,
    accept_gzip: bool = False,
    headers: HeaderLines | None = None,
) -> ClientConfig:
    """The client options that the transfer flags describe; the fields that -H lines remove
    (`headers.omit`) go with the client, so that every request path leaves them out."""
    from ..config import ClientConfig  # its dataclasses load with the runner, not the parser

    return ClientConfig(
        omit_headers=headers.omit if headers is not None else frozenset(),
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        total_timeout=args.max_time,
        speed_limit=args.speed_limit,
        speed_time=args.speed_time,
        max_redirects=args.max_redirs,
        allow_downgrade=args.proto_redir_downgrade,
        location_trusted=args.location_trusted,
        proxy=args.proxy,
        trust_env=not args.noproxy_env,
        verify=not args.insecure,
        cafile=args.cacert,
        certfile=args.cert,
        keyfile=args.key,
        accept_gzip=accept_gzip,
    )


def add_upload_rate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--limit-rate",
        type=rate_arg,
        metavar="SIZE",
        help="upload rate limit in bytes/s (K, M, G, KiB...): for the whole upload, all the"
        " parts of an S3 upload and all the PATCHes of a tus upload together",
    )


def upload_config(args: argparse.Namespace, headers: HeaderLines | None = None) -> ClientConfig:
    """`client_config` with the upload's --limit-rate."""
    from dataclasses import replace

    return replace(client_config(args, headers=headers), limit_rate=args.limit_rate)


def default_output(url: str, output: str | None, output_dir: str | None) -> Path:
    """-o PATH as given; otherwise the URL's last segment (made safe) in -d DIR or the cwd."""
    from ..core.names import name_from_url  # only when a name must be chosen

    if output is not None:
        return Path(output)
    return Path(output_dir or ".") / name_from_url(url)
