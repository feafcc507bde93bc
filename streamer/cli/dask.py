"""`streamer get -i MANIFEST -d DIR --dask tcp://HOST:PORT`: a bulk run on a Dask cluster.

The output is that of `get -i` (one bar, one summary line, the same exit codes); ``--json``
lines carry the worker that ran each job. The options that cannot hold across a cluster are
refused before anything starts, naming the option.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

from ..core.manifest import BadLine
from ..errors import StreamerError, UsageError
from .bulk import _options, _Tally
from .options import client_config, parse_headers, request_lines
from .output import wants_bar
from .shards import emit

# The options of `get -i` that a cluster run cannot honour, and why.
_REFUSED = (
    ("processes", "--processes", "the cluster's workers are the processes"),
    ("journal", "--journal", "each shard keeps its journal in DIR"),
    ("limit_rate", "--limit-rate", "a rate cannot be shared across machines"),
    (
        "host_request_rate",
        "--host-request-rate",
        "a per-host spacing cannot be kept across machines",
    ),
    (
        "user",
        "-u/--user",
        "the password would travel in the task graph to the scheduler and every worker; "
        "give the workers a ~/.netrc",
    ),
)
CONNECT_TIMEOUT = 20.0  # seconds: the scheduler, then a first worker (at most --connect-timeout)


def refuse_options(args: argparse.Namespace) -> None:
    """A `UsageError` (exit 2) naming the first option that cannot apply with --dask."""
    if args.input_file == "-":
        raise UsageError("-i - does not apply with --dask: the manifest is read twice; give a file")
    for attr, name, why in _REFUSED:
        if getattr(args, attr) is not None:
            raise UsageError(f"{name} does not apply with --dask: {why}")


def run_dask(args: argparse.Namespace) -> int:
    refuse_options(args)
    from .. import distributed

    try:
        distributed.require_distributed()
    except StreamerError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return exc.exit_code
    # distributed logs its retries and disconnects; the user gets one line per failure.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    tally = _Tally(None, bar=False)  # the bar opens once the manifest's jobs are counted
    lines = parse_headers(request_lines(args), download=True)
    try:
        results = distributed.as_completed(
            Path(args.input_file),
            Path(args.output_dir or "."),
            scheduler=args.dask,
            shards=args.shards,
            options=_options(args, frozenset(), lines),
            config=replace(client_config(args, headers=lines), report_phases=False),
            on_bad_line=lambda bad: _bad_line(args, tally, bad),
            connect_timeout=min(args.connect_timeout, CONNECT_TIMEOUT),
            on_total=tally.open_bar if wants_bar(args) else None,
        )
        for res in results:
            tally.add(res)
            if args.json:
                emit(sys.stdout, json.dumps(res.to_json()))
            elif not res.ok and not args.quiet:
                emit(sys.stderr, f"streamer: line {res.job.line}: {res.error}")
    except StreamerError as exc:
        if tally.bar is not None:
            tally.bar.close()
        print(f"streamer: {exc}", file=sys.stderr)
        return exc.exit_code
    if tally.bar is not None:
        tally.bar.close()
    if not args.quiet and not args.json:
        print(tally.summary(), file=sys.stderr)
    return tally.exit_status()


def _bad_line(args: argparse.Namespace, tally: _Tally, item: BadLine) -> None:
    tally.bad_lines += 1
    if args.json:
        bad = {"line": item.line, "result": "bad_manifest_line", "error": item.reason}
        emit(sys.stdout, json.dumps(bad))
    else:
        emit(sys.stderr, f"streamer: manifest line {item.line}: {item.reason}")
