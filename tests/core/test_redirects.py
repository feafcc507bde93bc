from __future__ import annotations

from collections.abc import Mapping

import pytest

from streamer.core.redirects import (
    REDIRECT_STATUSES,
    Hop,
    RedirectPolicy,
    follows,
    origin,
    plan_redirect,
    same_origin,
)
from streamer.errors import (
    ProtocolError,
    RedirectError,
    Result,
    TooManyRedirects,
    UnsafeRedirect,
    UsageError,
)

SECRET = "Zq8secretPw"


def plan(
    location: str | None,
    *,
    url: str = "https://a.example/start",
    status: int = 302,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    hops: int = 0,
    policy: RedirectPolicy | None = None,
) -> Hop:
    return plan_redirect(
        url=url,
        status=status,
        location=location,
        method=method,
        headers=headers or {},
        hops=hops,
        policy=policy or RedirectPolicy(),
    )


def test_redirect_statuses() -> None:
    """Exactly 301, 302, 303, 307 and 308 are followed (RFC 9110 15.4)."""
    assert frozenset({301, 302, 303, 307, 308}) == REDIRECT_STATUSES


def test_policy_defaults() -> None:
    """Default policy: 8 hops, no HTTPS->HTTP downgrade, cross-origin allowed."""
    assert RedirectPolicy() == RedirectPolicy(
        max_redirects=8, allow_downgrade=False, allow_cross_origin=True
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h/", ("http", "h", 80)),
        ("https://h/", ("https", "h", 443)),
        ("HTTPS://Example.COM/x", ("https", "example.com", 443)),
        ("http://h:8080/", ("http", "h", 8080)),
        ("https://h:443/", ("https", "h", 443)),
        ("http://u:p@h:81/", ("http", "h", 81)),
        ("http://[::1]/", ("http", "::1", 80)),
        ("http://[0:0::1]:8080/", ("http", "::1", 8080)),
        ("http://[FE80::1]/", ("http", "fe80::1", 80)),
        ("http://127.0.0.1/", ("http", "127.0.0.1", 80)),
        ("http://bücher.example/", ("http", "xn--bcher-kva.example", 80)),
        ("http://BÜCHER.example/", ("http", "xn--bcher-kva.example", 80)),
        ("http://xn--bcher-kva.example/", ("http", "xn--bcher-kva.example", 80)),
    ],
)
def test_origin(url: str, expected: tuple[str, str, int]) -> None:
    """origin() lower-cases scheme and host, fills default ports, normalises IPv6 and IDNA."""
    assert origin(url) == expected


@pytest.mark.parametrize("url", ["http://h:99999/", "http://h:abc/", "http://[::1/"])
def test_origin_rejects_unparsable(url: str) -> None:
    """An unparsable authority raises UsageError (a ValueError)."""
    with pytest.raises(UsageError):
        origin(url)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h/a", "http://H:80/b", True),
        ("https://h/a", "https://h:443/b?q", True),
        ("http://h/", "https://h/", False),
        ("http://h/", "http://h:8080/", False),
        ("http://h/", "http://g/", False),
        ("http://a.h/", "http://h/", False),
        ("http://bücher.example/", "http://xn--bcher-kva.example/", True),
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    """Same origin means same scheme, host and port (RFC 6454 5)."""
    assert same_origin(a, b) is same


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/next", "https://a.example/next"),
        ("next", "https://a.example/next"),
        ("../up", "https://a.example/up"),
        ("?q=1", "https://a.example/start?q=1"),
        ("//b.example/x", "https://b.example/x"),
        ("https://b.example/x?y=1", "https://b.example/x?y=1"),
        ("https://b.example/x#frag", "https://b.example/x"),
        ("/next#frag", "https://a.example/next"),
        ("  /padded  ", "https://a.example/padded"),
    ],
)
def test_location_resolved_and_fragment_dropped(location: str, expected: str) -> None:
    """Location is resolved against the request URL (RFC 9110 10.2.2); the fragment is dropped."""
    assert plan(location).url == expected


@pytest.mark.parametrize(
    ("status", "method", "new_method", "drop_body"),
    [
        (301, "GET", "GET", False),
        (301, "POST", "GET", True),
        (301, "PUT", "PUT", False),
        (301, "HEAD", "HEAD", False),
        (302, "GET", "GET", False),
        (302, "POST", "GET", True),
        (302, "post", "GET", True),
        (302, "DELETE", "DELETE", False),
        (303, "GET", "GET", True),
        (303, "POST", "GET", True),
        (303, "PUT", "GET", True),
        (303, "HEAD", "HEAD", True),
        (307, "POST", "POST", False),
        (307, "PUT", "PUT", False),
        (308, "POST", "POST", False),
        (308, "PATCH", "PATCH", False),
    ],
)
def test_method_rules(status: int, method: str, new_method: str, drop_body: bool) -> None:
    """303 -> GET (HEAD stays), 301/302 turn POST into GET, 307/308 keep method and body."""
    hop = plan("/next", status=status, method=method)
    assert (hop.method, hop.drop_body) == (new_method, drop_body)


def test_hop_limit() -> None:
    """hops >= max_redirects raises TooManyRedirects naming the limit; one less is allowed."""
    policy = RedirectPolicy(max_redirects=3)
    assert plan("/n", hops=2, policy=policy).url == "https://a.example/n"
    with pytest.raises(TooManyRedirects, match=r"limit 3") as info:
        plan("/n", hops=3, policy=policy)
    assert info.value.result is Result.REDIRECT_LIMIT_REACHED
    assert info.value.url == "https://a.example/start"


def test_zero_redirects_allowed() -> None:
    """max_redirects=0 refuses the very first redirect."""
    with pytest.raises(TooManyRedirects):
        plan("/n", policy=RedirectPolicy(max_redirects=0))


def test_hop_limit_checked_before_location() -> None:
    """The hop limit wins over a broken Location: the limit is the reason we stopped."""
    with pytest.raises(TooManyRedirects):
        plan(None, hops=8)


@pytest.mark.parametrize(
    "location",
    [None, "", "   ", "http://[::1/x", "http://h:99999/x", "/a\r\nSet-Cookie: x", "/a\x00b"],
)
def test_missing_or_broken_location(location: str | None) -> None:
    """No Location, an empty one, an unparsable one or control characters raise ProtocolError."""
    with pytest.raises(ProtocolError) as info:
        plan(location)
    assert info.value.url == "https://a.example/start"


@pytest.mark.parametrize("location", ["https:///nohost", "https://:80/x", "https://u:p@/x"])
def test_location_without_host(location: str) -> None:
    """A redirect to an HTTP URL without a host is a ProtocolError."""
    with pytest.raises(ProtocolError):
        plan(location, url="http://a.example/")


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "ftp://h/x",
        "javascript:alert(1)",
        "data:text/plain,hi",
        "gopher://h/",
        "FILE:///etc/passwd",
        "ws://h/",
    ],
)
def test_non_http_schemes_refused(location: str) -> None:
    """A redirect to anything but http/https raises UnsafeRedirect."""
    with pytest.raises(UnsafeRedirect) as info:
        plan(location)
    assert info.value.result is Result.UNSAFE_REDIRECT
    assert isinstance(info.value, RedirectError)


def test_downgrade_refused_by_default() -> None:
    """https -> http raises UnsafeRedirect unless allow_downgrade."""
    with pytest.raises(UnsafeRedirect, match="HTTP"):
        plan("http://a.example/x")
    hop = plan("http://a.example/x", policy=RedirectPolicy(allow_downgrade=True))
    assert hop.url == "http://a.example/x"


def test_upgrade_is_allowed() -> None:
    """http -> https is always fine (it is cross-origin, so credentials are dropped)."""
    hop = plan("https://a.example/x", url="http://a.example/", headers={"Cookie": "c"})
    assert (hop.url, hop.headers) == ("https://a.example/x", {})


def test_cross_origin_refused_when_not_allowed() -> None:
    """allow_cross_origin=False refuses a new origin; the message names both, redacted."""
    policy = RedirectPolicy(allow_cross_origin=False)
    with pytest.raises(UnsafeRedirect) as info:
        plan(
            f"https://u:{SECRET}@b.example:8443/up?sig={SECRET}",
            url=f"https://u:{SECRET}@a.example/start?token={SECRET}",
            policy=policy,
        )
    text = str(info.value)
    assert "https://a.example:443" in text
    assert "https://b.example:8443" in text
    assert SECRET not in text
    assert SECRET not in info.value.url


def test_same_origin_allowed_when_cross_origin_is_not() -> None:
    """allow_cross_origin=False still follows a same-origin redirect."""
    hop = plan("/other", policy=RedirectPolicy(allow_cross_origin=False))
    assert hop.url == "https://a.example/other"


def test_error_messages_never_leak_secrets() -> None:
    """Unsafe and broken-Location errors pass every URL through redact_url."""
    for location in (f"file://u:{SECRET}@h/x", f"http://u:{SECRET}@a.example/x"):
        with pytest.raises(UnsafeRedirect) as info:
            plan(location, url=f"https://u:{SECRET}@a.example/?sig={SECRET}")
        assert SECRET not in str(info.value)
    with pytest.raises(ProtocolError) as perr:
        plan(f"http://u:{SECRET}@[::1/x", url=f"https://u:{SECRET}@a.example/")
    assert SECRET not in str(perr.value)


ALL_HEADERS = {
    "Authorization": "Bearer t",
    "cookie": "sid=1",
    "PROXY-AUTHORIZATION": "Basic p",
    "Host": "a.example",
    "Content-Type": "application/json",
    "Content-Length": "12",
    "Content-Encoding": "gzip",
    "Transfer-Encoding": "chunked",
    "Expect": "100-continue",
    "Accept": "*/*",
    "User-Agent": "streamer",
    "Range": "bytes=10-",
}


def test_same_origin_keeps_headers_except_host() -> None:
    """A same-origin 307 keeps every header but Host, untouched and in order."""
    hop = plan("/next", status=307, method="PUT", headers=ALL_HEADERS)
    expected = {k: v for k, v in ALL_HEADERS.items() if k != "Host"}
    assert hop.headers == expected
    assert list(hop.headers) == list(expected)


def test_cross_origin_drops_credentials() -> None:
    """A cross-origin hop drops Authorization, Cookie and Proxy-Authorization in any case."""
    hop = plan("https://b.example/x", status=307, method="PUT", headers=ALL_HEADERS)
    dropped = {"Authorization", "cookie", "PROXY-AUTHORIZATION", "Host"}
    assert hop.headers == {k: v for k, v in ALL_HEADERS.items() if k not in dropped}


@pytest.mark.parametrize("location", ["https://a.example:8443/x", "https://evil.example/x"])
def test_port_or_host_change_is_cross_origin(location: str) -> None:
    """A different port or host is a different origin: credentials go."""
    hop = plan(location, headers={"Authorization": "t", "Accept": "x"})
    assert hop.headers == {"Accept": "x"}


def test_dropped_body_drops_body_headers() -> None:
    """When the body is dropped, the headers describing it go too; credentials stay same-origin."""
    hop = plan("/next", status=303, method="POST", headers=ALL_HEADERS)
    body = {"Content-Type", "Content-Length", "Content-Encoding", "Transfer-Encoding", "Expect"}
    assert hop.headers == {k: v for k, v in ALL_HEADERS.items() if k not in body | {"Host"}}


def test_cross_origin_and_dropped_body() -> None:
    """A cross-origin POST 302 keeps only the neutral headers."""
    hop = plan("https://b.example/", status=302, method="POST", headers=ALL_HEADERS)
    assert hop.headers == {"Accept": "*/*", "User-Agent": "streamer", "Range": "bytes=10-"}


def test_headers_input_not_modified() -> None:
    """plan_redirect copies the headers; the caller's mapping is left alone."""
    headers = dict(ALL_HEADERS)
    plan("https://b.example/", status=303, method="POST", headers=headers)
    assert headers == ALL_HEADERS


def test_original_userinfo_not_carried_cross_origin() -> None:
    """Userinfo of the request URL is kept on a relative hop, never carried to a new origin."""
    url = f"https://bob:{SECRET}@a.example/start"
    assert plan("/next", url=url).url == f"https://bob:{SECRET}@a.example/next"
    assert plan("//b.example/x", url=url).url == "https://b.example/x"
    assert plan("https://b.example/x", url=url).url == "https://b.example/x"


def test_location_userinfo_kept() -> None:
    """Userinfo written in the Location itself is kept as given."""
    assert plan("https://eve:pw@b.example/x").url == "https://eve:pw@b.example/x"


def test_non_redirect_status_is_a_usage_error() -> None:
    """Calling plan_redirect for a status that is not followed is a caller bug (UsageError)."""
    for status in (200, 304, 404):
        with pytest.raises(UsageError):
            plan("/x", status=status)
    for status in (300, 305, 306, 399):
        with pytest.raises(UsageError):
            plan(None, status=status)


@pytest.mark.parametrize("status", [300, 305, 306, 399])
def test_any_3xx_with_a_location_is_followed(status: int) -> None:
    """Any 3xx but 304 with a Location is a redirect (curl -L, wget, aria2); POST becomes GET
    as for 301/302; without a Location it is not one (the answer is final)."""
    assert follows(status, "/next") and not follows(status, None) and not follows(status, " ")
    assert plan("/next", status=status).url == "https://a.example/next"
    hop = plan("/next", status=status, method="POST")
    assert (hop.method, hop.drop_body) == ("GET", True)
    assert not follows(304, "/next")


def test_hop_is_frozen() -> None:
    """Hop is immutable, like the policy."""
    hop = plan("/x")
    with pytest.raises(AttributeError):
        hop.url = "other"  # type: ignore[misc]


def test_broken_request_url_is_a_usage_error() -> None:
    """An unparsable request URL is the caller's bug: UsageError, not a Location problem."""
    with pytest.raises(UsageError):
        plan("/x", url="http://[::1/start")


def test_location_trusted_keeps_credentials_but_not_the_proxys() -> None:
    """keep_credentials (curl's --location-trusted) sends Authorization and Cookie on to
    another origin; Proxy-Authorization is the proxy's and still goes."""
    policy = RedirectPolicy(keep_credentials=True)
    hop = plan("https://b.example/x", status=307, method="PUT", headers=ALL_HEADERS, policy=policy)
    assert hop.headers == {
        k: v for k, v in ALL_HEADERS.items() if k not in {"PROXY-AUTHORIZATION", "Host"}
    }
