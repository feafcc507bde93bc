"""Keep secrets out of the terminal, the logs and the files we write.

Three kinds of secret travel with a request: the password in a URL's userinfo (RFC 3986
section 3.2.1, which itself deprecates it), signatures and tokens in the query string of
presigned URLs (S3, GCS, Azure SAS, CloudFront, OAuth), and credential headers. Every message
that may show a URL or a header goes through this module first.

Nothing here raises: a redactor that fails on hostile input would push the caller into printing
the raw value instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus, unquote_plus

__all__ = [
    "SECRET_QUERY_KEYS",
    "SENSITIVE_HEADERS",
    "redact_headers",
    "redact_text",
    "redact_url",
    "url_secrets",
]

_MASK = "***"
_QUERY_MASK = "REDACTED"

# Query keys whose value is a credential or a signature, compared lower-cased after
# percent-decoding the key. Some (sv, sr, se, sp, st, spr) are not secret on their own but are
# the signed fields of an Azure SAS; hiding them costs nothing and keeps the list obvious.
SECRET_QUERY_KEYS = frozenset(
    {
        # generic credentials and OAuth 2.0 (RFC 6749 4.1.2, RFC 6750 2.3 access_token)
        "access_token",
        "api-key",
        "api_key",
        "apikey",
        "auth",
        "authorization",
        "bearer",
        "client_secret",
        "code",
        "id_token",
        "jwt",
        "key",
        "pass",
        "passwd",
        "password",
        "pwd",
        "refresh_token",
        "secret",
        "session",
        "sessionid",
        "sig",
        "signature",
        "token",
        # AWS S3 presigned, SigV4 and legacy SigV2
        "awsaccesskeyid",
        "x-amz-credential",
        "x-amz-security-token",
        "x-amz-signature",
        # Google Cloud Storage signed URLs, V4 and V2
        "googleaccessid",
        "x-goog-credential",
        "x-goog-signature",
        # CloudFront signed URLs (Signature is covered above)
        "key-pair-id",
        "policy",
        # Azure shared access signatures: sig is the HMAC, the rest are its signed fields
        "se",
        "ske",
        "skoid",
        "sks",
        "skt",
        "sktid",
        "skv",
        "sp",
        "spr",
        "sr",
        "st",
        "sv",
    }
)

# Any key containing one of these is treated as secret too: vendors invent names like
# "upload_token" or "X-Custom-Signature" faster than a list can follow.
_SECRET_KEY_PARTS = ("token", "secret", "signature", "password", "passwd", "credential")

SENSITIVE_HEADERS = frozenset(
    {
        "authorization",  # RFC 9110 11.6.2
        "proxy-authorization",  # RFC 9110 11.7.2
        "cookie",  # RFC 6265 5.4
        "set-cookie",  # RFC 6265 4.1
        "x-api-key",
        "x-auth-token",
        "x-access-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "private-token",
        "x-vault-token",
        "x-csrf-token",
        "x-xsrf-token",
    }
)

# Headers whose value is a URL; a redirect to a presigned URL carries the signature there.
_URL_HEADERS = frozenset({"location", "content-location", "referer"})

_PORT_RE = re.compile(r"(?::[0-9]*)?")


def _is_secret_key(raw_key: str) -> bool:
    key = unquote_plus(raw_key).strip().lower()
    return key in SECRET_QUERY_KEYS or any(part in key for part in _SECRET_KEY_PARTS)


def _redact_query(query: str) -> str:
    # Split by hand rather than with parse_qsl so every byte we keep is kept as sent. ";" is
    # also a separator for some servers (HTML 4 B.2.2), so a secret hidden behind it is caught.
    parts = re.split(r"([&;])", query)
    for i in range(0, len(parts), 2):
        key, eq, _value = parts[i].partition("=")
        if eq and _is_secret_key(key):
            parts[i] = f"{key}={_QUERY_MASK}"
    return "".join(parts)


def _redact_tail(tail: str) -> str:
    """Redact path?query#fragment: the fragment is dropped, it may hold an OAuth token."""
    # RFC 3986 3.5: the first "#" starts the fragment, whatever follows. The fragment is never
    # sent to the server, so a message loses nothing by omitting it.
    tail = tail.partition("#")[0]
    path, qmark, query = tail.partition("?")
    return path + qmark + _redact_query(query) if qmark else path


def _split_prefix(url: str) -> tuple[str, str]:
    """Split "scheme://" (or "//") from the rest; no prefix for a URL without an authority."""
    sep = url.find("://")
    if sep >= 0:
        return url[: sep + 3], url[sep + 3 :]
    if url.startswith("//"):
        return "//", url[2:]
    return "", url


def _port_ok(hostport: str) -> bool:
    # RFC 3986 3.2.2/3.2.3: host is a bracketed IP literal or has no ":"; the port is digits.
    if hostport.startswith("["):
        close = hostport.find("]")
        return close > 0 and _PORT_RE.fullmatch(hostport[close + 1 :]) is not None
    _host, colon, port = hostport.partition(":")
    return not colon or port.isdigit() or port == ""


def _fallback(prefix: str, rest: str) -> str:
    """For a URL we cannot split: drop everything up to the last "@" so no userinfo survives."""
    if "@" in rest:
        rest = rest[rest.rindex("@") + 1 :]
    return prefix + _redact_tail(rest)


def redact_url(url: str) -> str:
    """`url` with the userinfo password replaced by "***" and secret query values by "REDACTED".

    The user name stays (it names the account, useful in a message); the fragment is dropped.
    """
    if "@" not in url and "?" not in url and "#" not in url:
        return url  # no userinfo, query or fragment: nothing to redact (the common case)
    prefix, rest = _split_prefix(url)
    # RFC 3986 3.2: the authority ends at the first "/", "?" or "#" (or the end).
    end = next((i for i, ch in enumerate(rest) if ch in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    if not _port_ok(hostport):
        # A password holding a raw "/", "?" or "#" makes the parser see host "user" and port
        # "pass..."; whatever it is, it is not a URL we can show piecewise.
        return _fallback(prefix, rest)
    if at:
        user, colon, password = userinfo.partition(":")
        if colon and password:
            userinfo = f"{user}:{_MASK}"
    return prefix + userinfo + at + hostport + _redact_tail(tail)


def url_secrets(url: str) -> list[str]:
    """The strings of `url` that must never be printed: its password and secret query values.

    Used to scrub texts that quote the URL in another spelling than ours (a library's error
    message, a normalised URL), where replacing the URL as a whole would miss it.
    """
    found: list[str] = []
    rest = _split_prefix(url)[1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    userinfo, at, _host = authority.rpartition("@")
    if at and ":" in userinfo:
        found.append(userinfo.split(":", 1)[1])
    query = rest.partition("?")[2].partition("#")[0]
    for item in re.split(r"[&;]", query):
        key, eq, value = item.partition("=")
        if eq and value and _is_secret_key(key):
            found.append(value)
    decoded = [unquote_plus(s) for s in found]
    return [s for s in dict.fromkeys(found + decoded) if s]


# "scheme://user:password@" anywhere in a text (RFC 3986 3.2.1 userinfo), for URLs quoted
# in a message we did not word ourselves (another URL than the request's: a proxy's).
_USERINFO_IN_TEXT = re.compile(r"(://[^\s/?#@:'\"]*):[^\s/?#@'\"]+@")


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every occurrence of each secret (and its percent-encoded forms) as "***",
    and the password of any URL quoted in it masked too.

    Secrets shorter than 4 characters are skipped: masking "a" would shred the text and hide
    nothing worth hiding.
    """
    if "@" in text:
        text = _USERINFO_IN_TEXT.sub(r"\1:***@", text)
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= 4:
            # Foreign libraries often print the URL they were given, i.e. the encoded form.
            forms.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
    # Longest first, so a secret that contains another one is masked whole.
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, _MASK)
    return text


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of `headers` with credential values as "***" and URL values through redact_url."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        lower = name.lower()
        if lower in SENSITIVE_HEADERS:
            out[name] = _MASK
        elif lower in _URL_HEADERS:
            out[name] = redact_url(value)
        else:
            out[name] = value
    return out
