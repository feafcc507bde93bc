"""`streamer get`: its options, the choice between one download and many, and one download."""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Result, StreamerError, UsageError, exit_code
from .curlopts import (
    add_get_options,
    apply_silence,
    check_get_modes,
    create_dirs,
    emit_write_out,
    time_cond_headers,
)
from .options import (
    add_transfer_options,
    client_config,
    count_arg,
    default_output,
    parse_headers,
    request_lines,
    seconds_arg,
    size_arg,
)
from .output import error_line, report_failure, report_success, wants_bar
from .s3 import add_endpoint_options, presigned_get, refuse_user

if TYPE_CHECKING:
    from ..results import DownloadResult

# The parser's defaults and each option's flag, for the contract check (see contract.py).
GET_DEFAULTS: dict[str, Any] = {}
GET_NAMES: dict[str, str] = {}


def add_parser(sub: Any) -> None:
    get = sub.add_parser("get", help="download a URL into a file")
    get.add_argument("url", metavar="URL", nargs="?", help="the URL (or use -i MANIFEST)")
    bulk = get.add_argument_group("many downloads (-i)")
    bulk.add_argument(
        "-i",
        "--input-file",
        metavar="MANIFEST",
        help="URLs, JSON Lines or CSV/TSV with a url column; - for stdin",
    )
    bulk.add_argument(
        "-j",
        "--jobs",
        type=count_arg,
        default=16,
        metavar="N",
        help="transfers at once (default 16)",
    )
    bulk.add_argument(
        "--max-per-host",
        type=count_arg,
        default=16,
        metavar="N",
        help="transfers at once to one host (default 16)",
    )
    bulk.add_argument(
        "--pipeline",
        type=count_arg,
        metavar="N",
        help="requests in flight per connection to a host (HTTP/1.1 pipelining; default"
        " $STREAMER_PIPELINE, else 8; 1: off; a host that cuts a pipeline short gets 1)",
    )
    bulk.add_argument(
        "--limit-rate",
        type=size_arg,
        metavar="BYTES",
        help="download rate limit in bytes/s (K, M, G suffixes): the file's, or the whole"
        " run's with -i",
    )
    bulk.add_argument(
        "--processes",
        type=count_arg,
        metavar="N",
        help="worker processes sharing the jobs (default for manifest files of 1000 jobs or"
        " more: one per usable CPU while the summed RSS stays under 100 MiB and half of the"
        " available memory; else 1)",
    )
    bulk.add_argument(
        "--dry-run",
        action="store_true",
        help="plan every job (targets, duplicates, journal) without fetching",
    )
    bulk.add_argument(
        "--host-request-rate",
        type=seconds_arg,
        metavar="N",
        help="at most N new requests per second to any one host",
    )
    bulk.add_argument(
        "--memory-budget",
        type=size_arg,
        default=64 << 20,
        metavar="SIZE",
        help="bytes buffered by all transfers together (default 64M)",
    )
    bulk.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run the jobs on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT);"
        " DIR must be shared by every worker (needs streamer[dask])",
    )
    bulk.add_argument(
        "--shards",
        type=count_arg,
        metavar="N",
        help="with --dask: tasks to cut the jobs into (default 4 per worker)",
    )
    bulk.add_argument(
        "--journal", metavar="PATH", help="run journal (default DIR/.streamer-journal.jsonl)"
    )
    where = get.add_mutually_exclusive_group()
    where.add_argument("-o", "--output", metavar="PATH", help="write to PATH")
    where.add_argument(
        "-d", "--output-dir", metavar="DIR", help="write into DIR under the name from the URL"
    )
    get.add_argument(
        "--max-filesize",
        type=size_arg,
        metavar="SIZE",
        help="refuse bodies larger than SIZE (K, M, G, KiB, MiB, GiB)",
    )
    get.add_argument("--checksum", metavar="ALGO:HEX", help="e.g. sha256:<hex>")
    get.add_argument(
        "--compressed", action="store_true", help="ask for gzip/deflate and save the decoded body"
    )
    get.add_argument("--no-clobber", action="store_true", help="never overwrite an existing file")
    get.add_argument(
        "-J",
        "--remote-header-name",
        action="store_true",
        help="name the file from Content-Disposition (safe name, in -d DIR)",
    )
    get.add_argument(
        "--clobber", action="store_true", help="with -J: allow replacing an existing file"
    )
    get.add_argument(
        "--wait-lock",
        type=seconds_arg,
        metavar="SECONDS",
        help="if another streamer is downloading the same target, wait for it",
    )
    get.add_argument(
        "--split",
        type=count_arg,
        default=1,
        metavar="N",
        help="fetch one file over N connections in byte ranges (like aria2 -x/-s)",
    )
    get.add_argument(
        "--no-resume", action="store_true", help="ignore a partial download and start over"
    )
    add_get_options(get)
    add_transfer_options(get)
    s3 = get.add_argument_group("s3://BUCKET/KEY (credentials from AWS_* variables)")
    add_endpoint_options(s3)
    # argparse keeps its actions in a private list; it offers no public way to walk them.
    for action in get._actions:
        GET_DEFAULTS[action.dest] = action.default
        flags = sorted(action.option_strings, key=len)
        GET_NAMES[action.dest] = "/".join(flags) if flags else action.dest


def run_command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if (args.url is None) == (args.input_file is None):
        parser.error("give one URL, or -i MANIFEST")
    from . import contract  # its table of dataclasses: after the parse (see main.py)

    apply_silence(args)
    try:
        mode = contract.check(args, GET_DEFAULTS, GET_NAMES)
        check_get_modes(args)
        create_dirs(args)
    except UsageError as exc:
        parser.error(exc.message)
    except OSError as exc:
        error_line(args, f"--create-dirs: {exc}")
        return exit_code(Result.DOWNLOAD_FILE_CANT_OPEN)
    if mode is contract.Mode.MANY:
        if args.dask is not None:
            from .dask import run_dask

            return run_dask(args)
        from .bulk import run_bulk

        return run_bulk(args)
    return run_get(args)


def run_get(args: argparse.Namespace) -> int:
    from ..core.wire import is_s3_url
    from ..sync import run  # the runner (asyncio, the client) loads after the parse

    url = args.url
    to_stdout = args.output == "-"
    path = Path("-") if to_stdout else default_output(url, args.output, args.output_dir)
    bar = None
    if wants_bar(args) and not to_stdout:  # stdout: the body is the output, no bar
        from ..progress import TqdmProgress  # tqdm costs start-up; only load it for a bar

        bar = TqdmProgress(path.name)
    started = time.monotonic()
    fetch_url, resume_key = url, None
    try:
        if is_s3_url(url):  # a presigned GET: the whole download path, --split included
            refuse_user(args)
            fetch_url, resume_key = presigned_get(url, args.endpoint_url, args.region)
        result = run(_download(args, (fetch_url, resume_key), path, bar, to_stdout))
    except StreamerError as exc:
        if bar is not None:
            bar.close()
        code = report_failure(args, url, exc)
        emit_write_out(args, (getattr(exc, "status", None), 0, started, exc.url or url, code))
        return code
    if bar is not None:
        bar.close()
    report_success(args, result)
    emit_write_out(args, (result.status, result.size, started, result.final_url, 0))
    return 0


async def _download(
    args: argparse.Namespace,
    target: tuple[str, str | None],
    path: Path,
    bar: Any,
    to_stdout: bool,
) -> DownloadResult:
    """`target`: the URL to fetch, and what names its partial download across runs."""
    from ..client import Client
    from ..core.checksum import Checksum
    from ..core.retry import RetryPolicy
    from .signals import stop_on_sigterm

    stop_on_sigterm()
    url, resume_key = target
    lines = parse_headers(request_lines(args), url, download=True)
    config = client_config(args, accept_gzip=args.compressed, headers=lines)
    config = replace(config, limit_rate=args.limit_rate)
    headers = {**lines.headers, **time_cond_headers(args.time_cond)}
    retry = RetryPolicy(retries=args.retry, delay=args.retry_delay, max_time=args.retry_max_time)
    async with Client(config) as client:
        if to_stdout:
            from ..transfer.sink import SinkRequest, run_to_sink
            from ..transfer.throttle import rate_throttle
            from .stdout import stdout_sink

            checksum = Checksum.parse(args.checksum) if args.checksum else None
            throttle = rate_throttle(args.limit_rate)
            req = SinkRequest(url, args.max_filesize, checksum, headers, retry, throttle)
            return await run_to_sink(client, req, stdout_sink(url))
        # curl: -o names the file even with -J; -J chooses only when no -o was given.
        remote_name = args.remote_header_name and args.output is None
        return await client.download(
            url,
            path,
            max_bytes=args.max_filesize,
            checksum=args.checksum,
            headers=headers,
            no_clobber=args.no_clobber,
            progress=bar,
            resume=not args.no_resume,
            retry=retry,
            remote_name=remote_name,
            clobber=args.clobber,
            split=max(args.split, 1),
            wait_lock=args.wait_lock,
            resume_key=resume_key,
        )
