"""Redirect decisions as one pure function (RFC 9110 section 15.4 and 10.2.2).

The transport asks `plan_redirect` what to do with a 3xx answer and gets back a `Hop`: the next
URL, method, whether the body goes along and which headers. All the security rules live here,
where they can be tested without a server: the hop limit, refusing non-HTTP schemes and
HTTPS-to-HTTP downgrades, and dropping credentials when the origin changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import SplitResult, urljoin, urlsplit

from streamer.core.redact import redact_url
from streamer.errors import ProtocolError, TooManyRedirects, UnsafeRedirect, UsageError

__all__ = [
    "REDIRECT_STATUSES",
    "Hop",
    "RedirectPolicy",
    "follows",
    "origin",
    "plan_redirect",
    "same_origin",
]

# RFC 9110 15.4.2-15.4.9: the redirects proper, which must carry a Location (a missing one is a
# broken redirect). Any other 3xx but 304 (a cache answer, 15.4.5) is followed too when it does
# carry a Location (300 with a preferred choice, 15.4.1; 305/306, 15.4.6/15.4.7), as curl -L,
# wget and aria2 do; without one it is the final answer.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def follows(status: int, location: str | None) -> bool:
    """Whether a `status` answer with this Location header is a redirect to follow."""
    if status in REDIRECT_STATUSES:
        return True
    return 300 <= status < 400 and status != 304 and bool(location and location.strip())


# RFC 9110 4.2.1/4.2.2: the default ports; ws/wss share them (RFC 6455 3).
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_FOLLOWABLE_SCHEMES = frozenset({"http", "https"})

# Credentials meant for the origin that asked for them (RFC 9110 11.6.2, RFC 6265 8.5). Fetch
# (4.4 HTTP-redirect fetch) and curl drop them on a cross-origin hop; Proxy-Authorization is
# really for the proxy, but the brief's rule is to drop it as well and re-add it per request.
_ORIGIN_CREDENTIALS = frozenset({"authorization", "cookie", "proxy-authorization"})
_PROXY_AUTH = "proxy-authorization"  # dropped even when trusted: it is added again per route

# Headers that describe the request body; meaningless once the body is dropped. The brief's
# list plus Fetch's "request-body-header names" (Content-Language, Content-Location).
_BODY_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "content-encoding",
        "content-language",
        "content-location",
        "transfer-encoding",
        "expect",
    }
)


@dataclass(frozen=True)
class RedirectPolicy:
    """What redirects a request may follow."""

    max_redirects: int = 8
    allow_downgrade: bool = False  # https -> http
    allow_cross_origin: bool = True  # uploads set False
    # curl's --location-trusted: Authorization and Cookie go on to the other origin too (the
    # user vouches for every host the redirects lead to). Proxy-Authorization is still
    # dropped: it is the proxy's, added again to each request for its route.
    keep_credentials: bool = False


@dataclass(frozen=True)
class Hop:
    """The next request: where, how, with or without the body, and with which headers."""

    url: str
    method: str
    drop_body: bool
    headers: dict[str, str]


def _canonical_host(host: str) -> str:
    """Lower-case `host`, IDNA-encode a name and normalise an IP literal, so equal hosts match."""
    host = host.lower()
    try:
        # "[::0:1]" and "[::1]" are the same address; compressed form compares equal.
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    try:
        # RFC 5890: "bücher.example" and "xn--bcher-kva.example" are one host. The stdlib codec
        # is IDNA 2003; good enough to compare, and a label it rejects is kept as written.
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _origin_of(parts: SplitResult) -> tuple[str, str, int]:
    scheme = parts.scheme.lower()
    port = parts.port  # raises ValueError for a port that is not 0-65535
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return scheme, _canonical_host(parts.hostname or ""), port


def origin(url: str) -> tuple[str, str, int]:
    """The (scheme, host, port) origin of `url` (RFC 6454 4), default ports filled in.

    Raises UsageError for a URL whose authority cannot be parsed.
    """
    try:
        return _origin_of(urlsplit(url))
    except ValueError as exc:
        raise UsageError(f"cannot parse URL: {exc}", url=redact_url(url)) from None


def same_origin(a: str, b: str) -> bool:
    """Whether `a` and `b` share scheme, host and port (RFC 6454 5)."""
    return origin(a) == origin(b)


def _resolve(url: str, status: int, location: str | None) -> tuple[str, SplitResult]:
    """The absolute target of a redirect, fragment dropped, with its parsed form."""
    safe = redact_url(url)
    if location is None or not location.strip():
        raise ProtocolError(f"redirect {status} without a Location", url=safe)
    # A control character in a header value means a broken or hostile peer (RFC 9110 5.5).
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in location):
        raise ProtocolError(f"redirect {status} with control characters in Location", url=safe)
    try:
        # RFC 9110 10.2.2: a relative reference is resolved against the request URL.
        target = urljoin(url, location.strip())
        parts = urlsplit(target)
        _origin_of(parts)  # validates the port
    except ValueError:
        raise ProtocolError(
            f"redirect {status} to an unparsable Location {redact_url(location)}", url=safe
        ) from None
    # RFC 3986 3.5: the fragment is client-side only and is never part of a request target.
    target = target.partition("#")[0]
    return target, parts._replace(fragment="")


def _check_target(
    url: str, source: tuple[str, str, int], target: str, parts: SplitResult, policy: RedirectPolicy
) -> bool:
    """Raise if the hop is unsafe under `policy`; return whether it stays on the same origin."""
    safe, safe_target = redact_url(url), redact_url(target)
    scheme = parts.scheme.lower()
    if scheme not in _FOLLOWABLE_SCHEMES:
        # file:, ftp:, javascript:, data: ... would reach outside HTTP entirely.
        raise UnsafeRedirect(f"refusing redirect to non-HTTP URL {safe_target}", url=safe)
    if not parts.hostname:
        raise ProtocolError(f"redirect to a URL without a host: {safe_target}", url=safe)
    if source[0] == "https" and scheme == "http" and not policy.allow_downgrade:
        raise UnsafeRedirect(f"refusing redirect from HTTPS down to HTTP {safe_target}", url=safe)
    dest = _origin_of(parts)
    if source != dest and not policy.allow_cross_origin:
        raise UnsafeRedirect(
            f"refusing cross-origin redirect from {_show(source)} to {_show(dest)} "
            f"({safe} -> {safe_target})",
            url=safe,
        )
    return source == dest


def _show(org: tuple[str, str, int]) -> str:
    scheme, host, port = org
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _next_method(status: int, method: str) -> tuple[str, bool]:
    """The method of the next request and whether the body is dropped."""
    if status == 303:
        # RFC 9110 15.4.4: 303 means "GET the answer over there"; HEAD stays HEAD (Fetch 4.4).
        return ("HEAD" if method == "HEAD" else "GET"), True
    if status not in (307, 308) and method == "POST":
        # RFC 9110 15.4.2/15.4.3 notes: user agents historically turn POST into GET here; curl
        # and every browser do, and servers rely on it.
        return "GET", True
    # 307/308 (15.4.8, 15.4.9) must repeat the request unchanged; the others keep other methods.
    return method, False


def _next_headers(
    headers: Mapping[str, str], *, same: bool, drop_body: bool, trusted: bool = False
) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        # Host is derived from the URL by the client (RFC 9110 7.2); a copied one would send the
        # next request to the old virtual host.
        if lower == "host":
            continue
        if not same and lower in _ORIGIN_CREDENTIALS and not (trusted and lower != _PROXY_AUTH):
            continue
        if drop_body and lower in _BODY_HEADERS:
            continue
        out[name] = value
    return out


def plan_redirect(
    *,
    url: str,
    status: int,
    location: str | None,
    method: str,
    headers: Mapping[str, str],
    hops: int,
    policy: RedirectPolicy,
) -> Hop:
    """Decide the next request after `status` from `url`, `hops` redirects already followed.

    Raises TooManyRedirects, ProtocolError (no usable Location) or UnsafeRedirect. The method
    is returned upper-cased, as the client sends it.
    """
    if not follows(status, location):
        raise UsageError(f"status {status} is not a redirect to follow", url=redact_url(url))
    if hops >= policy.max_redirects:
        raise TooManyRedirects(
            f"too many redirects (limit {policy.max_redirects})", url=redact_url(url)
        )
    source = origin(url)  # a broken request URL is the caller's error (UsageError)
    target, parts = _resolve(url, status, location)
    same = _check_target(url, source, target, parts, policy)
    new_method, drop_body = _next_method(status, method.upper())
    new_headers = _next_headers(
        headers, same=same, drop_body=drop_body, trusted=policy.keep_credentials
    )
    return Hop(url=target, method=new_method, drop_body=drop_body, headers=new_headers)
