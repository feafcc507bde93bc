"""Routes from the environment: a proxy (http_proxy, https_proxy, no_proxy) and netrc
credentials for each origin, looked up once per (scheme, host) with the standard library.

aiohttp's ``trust_env`` looks both up in a worker thread for every request (and reads ~/.netrc
once more on the event loop); for many small files those thread hops cost more than the
transfers (bench/README.md, bench_bulk.py). Here the session is built with ``trust_env=False``
and each request gets its origin's route explicitly, from urllib's and netrc's public
functions, so no aiohttp internals are involved.
"""

from __future__ import annotations

import base64
import netrc
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from yarl import URL

# The schemes whose proxy variables apply (urllib's getproxies() also returns ftp, no, ...).
_PROXIED = ("http", "https", "ws", "wss")


@dataclass(frozen=True)
class Route:
    """What the environment says about requests to one origin: a proxy, and netrc credentials."""

    proxy: URL | None = None
    proxy_authorization: str | None = None  # credentials in the proxy URL, as a header value
    authorization: str | None = None  # from ~/.netrc (or $NETRC) for the host, likewise


NO_ROUTE = Route()


class EnvRoutes:
    """The environment's route for each origin, looked up once for the life of a client."""

    MAX_ENTRIES = 4096  # a run over very many hosts starts over rather than growing

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}

    def lookup(self, url: str) -> Route:
        # Keyed by the URL's text up to its path: the route depends on scheme and host only.
        scheme, sep, rest = url.partition("://")
        end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
        key = scheme + sep + rest[:end]
        route = self._routes.get(key)
        if route is None:
            if len(self._routes) >= self.MAX_ENTRIES:
                self._routes.clear()
            route = self._routes[key] = env_route(url)
        return route


def env_route(url: str) -> Route:
    """The proxy and netrc credentials the environment gives requests to `url`."""
    parts = urlsplit(url)
    host = parts.hostname
    if host is None:
        return NO_ROUTE
    proxy, proxy_auth = _proxy_for(parts.scheme.lower(), host)
    return Route(proxy, proxy_auth, _netrc_authorization(host))


def _proxy_for(scheme: str, host: str) -> tuple[URL | None, str | None]:
    """The proxy for `scheme`, unless no_proxy names `host`; with its credentials as a header."""
    if scheme not in _PROXIED:
        return None, None
    proxies = urllib.request.getproxies_environment()
    wanted = proxies.get(scheme)
    if not wanted or urllib.request.proxy_bypass(host):
        return None, None
    proxy = URL(wanted if "://" in wanted else "http://" + wanted)
    auth = None
    if proxy.user is not None:
        auth = _basic(unquote(proxy.raw_user or ""), unquote(proxy.raw_password or ""))
        proxy = proxy.with_user(None)
    return proxy, auth


def _netrc_authorization(host: str) -> str | None:
    """Basic credentials for `host` from $NETRC or ~/.netrc (its `default` entry too)."""
    path = os.environ.get("NETRC")
    if not path:
        path = str(Path.home() / ".netrc")
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        return None  # no file, or one we cannot read: no credentials, as curl does
    if entry is None:
        return None
    login, _account, password = entry
    return _basic(login or "", password or "")


def _basic(user: str, password: str) -> str:
    """An RFC 7617 Basic credential (UTF-8, as RFC 7617 section 2.1 allows)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


__all__ = ["NO_ROUTE", "EnvRoutes", "Route", "env_route"]
