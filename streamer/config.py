"""Client options as one frozen value, validated once when the client is built."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from . import __version__
from .errors import UsageError

DEFAULT_CHUNK_SIZE = 1 << 20


def _check_proxy(proxy: str) -> None:
    """Refuse a proxy URL aiohttp could not use, before it echoes it. The message never
    quotes the URL: a proxy URL often carries a password (RFC 3986 3.2.1)."""
    try:
        parts = urlsplit(proxy)
        parts.port  # noqa: B018  (raises ValueError for a port that is not 0-65535)
    except ValueError as exc:  # its text names the problem, not the URL
        raise UsageError(f"invalid proxy URL: {str(exc).lower()}") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme if parts.scheme.isalnum() else "?"
        raise UsageError(f"proxy must be an http:// or https:// URL, not {scheme}://")
    if not parts.hostname:
        raise UsageError("invalid proxy URL: no host")


@dataclass(frozen=True)
class TLSOptions:
    """How the server's certificate is checked and which client certificate is shown."""

    verify: bool = True
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None


@dataclass(frozen=True)
class ClientConfig:
    """Everything a `Client` is built from; `Client(**options)` fills this in.

    Timeouts are seconds (None: none). ``read_timeout`` is the idle time allowed between two
    reads; a slow drip that never goes idle is caught by ``speed_limit``/``speed_time`` instead
    (like curl's options of those names). Its window never counts the time a transfer waits
    for its own ``limit_rate`` (curl's does): it judges the peer (`core.stall.OwnWaits`).
    """

    headers: Mapping[str, str] = field(default_factory=dict)
    # Names of fields the client would send by itself that it must not send (curl's
    # -H 'Name:'), any case: User-Agent, Accept, Accept-Encoding, Content-Type, Expect...
    # Host, Content-Length and Transfer-Encoding frame the request and cannot be omitted.
    omit_headers: Collection[str] = frozenset()
    connect_timeout: float | None = 30.0
    read_timeout: float | None = 60.0
    # Seconds for one file's whole transfer attempt (curl's --max-time): one request for a
    # plain GET/PUT/POST, every request of a tus or S3 multipart upload or a split download
    # (transfer/deadline.py); each retry gets a fresh one.
    total_timeout: float | None = None
    speed_limit: float | None = None
    speed_time: float = 30.0
    max_redirects: int = 8
    allow_downgrade: bool = False
    # curl's --location-trusted: credentials (Authorization, Cookie) follow a redirect to
    # another origin; by default they are dropped there (RFC 9110 15.4, core.redirects).
    location_trusted: bool = False
    proxy: str | None = None
    trust_env: bool = True
    verify: bool = True
    cafile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    accept_gzip: bool = False
    # Bytes per second for each download and each upload (curl's --limit-rate): a --split
    # file's segments share it, as do an S3 upload's parts and a tus upload's PATCHes. Bulk
    # runs limit the whole run instead (BulkOptions.limit_rate).
    limit_rate: float | None = None
    user_agent: str = f"streamer/{__version__}"
    max_connections: int = 100
    max_per_host: int = 0
    expect_timeout: float = 1.0  # how long an upload waits for "100 Continue" before sending
    # Report resolving/connecting/requesting phases to progress callbacks. aiohttp's tracing
    # costs every request some awaits, so bulk runs (no per-file progress) turn it off.
    report_phases: bool = True
    # Read plain http:// download bodies on a raw socket into a reused buffer rather than
    # through aiohttp (transfer/fastpath.py); False keeps every body on aiohttp.
    fast_body: bool = True

    def __post_init__(self) -> None:
        _positive("chunk_size", self.chunk_size)
        self._check_omit()
        if self.max_redirects < 0:
            raise UsageError(f"max_redirects must be >= 0, not {self.max_redirects}")
        for name in (
            "connect_timeout",
            "read_timeout",
            "total_timeout",
            "speed_limit",
            "limit_rate",
        ):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be > 0 (or None), not {value}")
        if self.speed_time <= 0:
            raise UsageError(f"speed_time must be > 0, not {self.speed_time}")
        if self.proxy is not None:
            _check_proxy(self.proxy)

    def _check_omit(self) -> None:
        """Lower-case `omit_headers` (refusing framing fields); a name both given in `headers`
        and omitted is a contradiction, refused rather than guessed."""
        from .core.headers import omit_names

        if isinstance(self.omit_headers, str):  # a str is a collection of one-letter names
            raise UsageError("omit_headers takes a collection of header names, not one string")
        omit = omit_names(self.omit_headers)
        object.__setattr__(self, "omit_headers", omit)  # frozen: normalised once, here
        both = sorted(name for name in self.headers if name.lower() in omit)
        if both:
            raise UsageError(f"header {both[0]!r} is both in headers and in omit_headers")

    @property
    def tls(self) -> TLSOptions:
        return TLSOptions(self.verify, self.cafile, self.certfile, self.keyfile)

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ClientConfig:
        """Build from keyword options, naming any unknown one (a typo must not pass silently)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise UsageError(f"unknown client option(s): {', '.join(unknown)}")
        return cls(**options)


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise UsageError(f"{name} must be > 0, not {value}")
