"""Which `streamer get` option holds in which mode: one table, checked before any request.

Every option of `get` is either honoured in a mode (one download, `--split`, `-i`) or refused
there with a usage error (exit 2) that names the option and the mode; nothing is silently
ignored. `tests/test_contract.py` walks the parser, so an option added without a row here, or
a mode without a decision, fails a test.
"""

from __future__ import annotations

import argparse
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError


class Mode(enum.Enum):
    ONE = "a single download"
    SPLIT = "--split"
    MANY = "-i runs"


ALL = frozenset(Mode)
ONE_FILE = frozenset({Mode.ONE, Mode.SPLIT})


@dataclass(frozen=True)
class Rule:
    """Where an option is honoured, and why it is refused elsewhere."""

    honoured: frozenset[Mode]
    why: str = ""


_MANY_ONLY = Rule(frozenset({Mode.MANY}), "it applies to -i runs only")
_NAMES_ONE_FILE = Rule(ONE_FILE, "it names one file; with -i use -d DIR and the manifest's paths")

# dest -> rule. Options absent from the table choose the mode itself (url, -i, --split).
CONTRACT: dict[str, Rule] = {
    "output_dir": Rule(ALL),
    "max_filesize": Rule(ALL),
    "no_clobber": Rule(ALL),
    "no_resume": Rule(ALL),
    "header": Rule(ALL),
    "user": Rule(ALL),  # refused with --dask by cli/dask.py: the password would travel
    "user_agent": Rule(ALL),
    "referer": Rule(ALL),
    "location_trusted": Rule(ALL),
    "connect_timeout": Rule(ALL),
    "max_time": Rule(ALL),
    "read_timeout": Rule(ALL),
    "speed_limit": Rule(ALL),
    "speed_time": Rule(ALL),
    "max_redirs": Rule(ALL),
    "proto_redir_downgrade": Rule(ALL),
    "cacert": Rule(ALL),
    "cert": Rule(ALL),
    "key": Rule(ALL),
    "insecure": Rule(ALL),
    "proxy": Rule(ALL),
    "noproxy_env": Rule(ALL),
    "retry": Rule(ALL),
    "retry_delay": Rule(ALL),
    "retry_max_time": Rule(ALL),
    "quiet": Rule(ALL),
    "no_progress": Rule(ALL),
    "progress": Rule(ALL),
    "json": Rule(ALL),
    "compressed": Rule(
        frozenset({Mode.ONE, Mode.MANY}),
        "byte ranges of an encoded body cannot be joined into the decoded file",
    ),
    "checksum": Rule(ONE_FILE, "give each job its own checksum in the manifest"),
    "output": _NAMES_ONE_FILE,
    "remote_header_name": _NAMES_ONE_FILE,
    "clobber": Rule(ALL),  # curl's default: -o PATH replaces PATH; with -J it allows it too
    "wait_lock": Rule(
        ONE_FILE, "a job whose target another process holds fails as target_busy; re-run it"
    ),
    "limit_rate": Rule(ALL),  # one file's rate, all of a --split file's segments, or the run's
    "continue_at": Rule(ALL),  # only "-" (resuming is the default): checked by curlopts
    "create_dirs": Rule(ALL),
    "silent": Rule(ALL),
    "show_error": Rule(ALL),
    "fail": Rule(ALL),  # streamer always fails on an HTTP error (exit 22, nothing written)
    "write_out": Rule(ONE_FILE, "it reports one transfer; use --json for one line per job"),
    "time_cond": Rule(
        frozenset({Mode.ONE}), "a 304 answers one plain request; there is no file per range"
    ),
    "jobs": _MANY_ONLY,
    "max_per_host": _MANY_ONLY,
    "pipeline": _MANY_ONLY,
    "processes": _MANY_ONLY,
    "dry_run": _MANY_ONLY,
    "host_request_rate": _MANY_ONLY,
    "memory_budget": _MANY_ONLY,
    "journal": _MANY_ONLY,
    "dask": _MANY_ONLY,  # and the options it cannot honour are refused by cli/dask.py
    "shards": _MANY_ONLY,
    # s3://BUCKET/KEY is one object, fetched through a presigned URL; a manifest holds URLs.
    "endpoint_url": Rule(ONE_FILE, "s3:// is for one download; a manifest lists http(s) URLs"),
    "region": Rule(ONE_FILE, "s3:// is for one download; a manifest lists http(s) URLs"),
}

# The options that choose the mode, and argparse's own.
MODE_OPTIONS = frozenset({"url", "input_file", "split", "help", "command"})


def mode_of(args: argparse.Namespace) -> Mode:
    if args.input_file is not None:
        return Mode.MANY
    return Mode.SPLIT if args.split > 1 else Mode.ONE


def check(args: argparse.Namespace, defaults: dict[str, Any], names: dict[str, str]) -> Mode:
    """The mode of `args`; a UsageError for the first option given where it does not hold.

    `defaults` are the parser's defaults (an option is given when it differs), `names` each
    option's flag as the user knows it (``--max-filesize``).
    """
    mode = mode_of(args)
    for dest in given(args, defaults):
        rule = CONTRACT[dest]
        if mode not in rule.honoured:
            raise UsageError(f"{names[dest]} does not apply to {mode.value}: {rule.why}")
    _check_pairs(args, mode)
    return mode


def given(args: argparse.Namespace, defaults: dict[str, Any]) -> Iterable[str]:
    for dest, default in defaults.items():
        if dest not in MODE_OPTIONS and getattr(args, dest, default) != default:
            yield dest


def _check_pairs(args: argparse.Namespace, mode: Mode) -> None:
    """Rules between options: what one option needs of another in this mode."""
    if args.clobber and args.no_clobber:
        raise UsageError("--clobber and --no-clobber contradict each other")
    if args.shards is not None and args.dask is None:
        raise UsageError("--shards needs --dask")
    if mode is Mode.MANY and args.processes is not None and args.processes > 1:
        if args.input_file == "-":
            raise UsageError("--processes needs a manifest file: standard input is read once")
        if args.dry_run or args.host_request_rate is not None:
            other = "--dry-run" if args.dry_run else "--host-request-rate"
            raise UsageError(f"--processes does not apply with {other}: that runs in one process")
