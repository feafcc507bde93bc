"""The request URL as it goes on the wire: exactly as given, but for what cannot go there.

Signed URLs (S3 presigning, CDN tokens) sign the path and query byte for byte, so a client
must not re-encode them: ``%2F`` stays ``%2F`` and ``%7E`` stays ``%7E`` even though RFC 3986
6.2.2 calls them equivalent to ``/`` and ``~``. Only what RFC 3986 3.3/3.4 does not allow in
a request target is percent-encoded (as UTF-8): spaces, controls, non-ASCII, ``"<>\\^`{|}`` and
a ``%`` that does not start an escape. A non-ASCII host is IDNA-encoded (RFC 5890), dot
segments are removed (RFC 3986 5.2.4, as curl does) and the fragment is never sent (3.5).
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, quote, urlsplit

__all__ = ["is_s3_url", "wire_url", "with_file_name"]

# RFC 3986 2.2/2.3 plus ":@/?" (3.3 pchar, 3.4 query); "%" only before two hex digits.
_UNSENDABLE = re.compile(r"%(?![0-9A-Fa-f]{2})|[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]")


def is_s3_url(url: str) -> bool:
    """``s3://BUCKET/KEY``: an S3 object, not a URL that goes on the wire (here, so that a
    command can tell without loading `core.s3`)."""
    return url[:5].lower() == "s3://"


def _escape(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group(0).encode("utf-8"))


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, on the path as written (an escaped %2E is not a dot, as in curl)."""
    if "." not in path:
        return path
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg == ".":
            if last:
                out.append("")
        elif seg == "..":
            if len(out) > 1:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out) if out != [""] else "/"


def _host(parts: SplitResult) -> str:
    netloc = parts.netloc
    if netloc.isascii():
        return netloc
    userinfo, at, hostport = netloc.rpartition("@")
    host, colon, port = hostport.rpartition(":") if hostport.count(":") == 1 else (hostport, "", "")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        host = _UNSENDABLE.sub(_escape, host)  # let the resolver refuse it, by its name
    return f"{userinfo}{at}{host}{colon}{port}"


def wire_url(url: str) -> str:
    """`url` with its path and query as they go on the wire (see the module docstring)."""
    parts = urlsplit(url)
    path = _remove_dot_segments(_UNSENDABLE.sub(_escape, parts.path)) or "/"
    query = _UNSENDABLE.sub(_escape, parts.query)
    has_query = "?" in url.partition("#")[0]
    return f"{parts.scheme}://{_host(parts)}{path}" + (f"?{query}" if has_query else "")


def with_file_name(url: str, name: str) -> str:
    """curl -T: a URL without a file part (its path empty or ending in "/") gets the local
    file's base name appended, percent-encoded whole; any other URL is kept as given."""
    parts = urlsplit(url)
    if parts.path and not parts.path.endswith("/"):
        return url
    path = (parts.path or "/") + quote(name, safe="")
    return parts._replace(path=path).geturl()
