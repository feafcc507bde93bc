from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.redact import (
    SECRET_QUERY_KEYS,
    SENSITIVE_HEADERS,
    redact_headers,
    redact_text,
    redact_url,
    url_secrets,
)

CANARY = "Cx9canaryZ7"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://bob:hunter2@h/x", "http://bob:***@h/x"),
        ("https://bob:hunter2@h:8443/x?a=1", "https://bob:***@h:8443/x?a=1"),
        ("http://bob@h/x", "http://bob@h/x"),
        ("http://bob:@h/x", "http://bob:@h/x"),
        ("http://:pw@h/x", "http://:***@h/x"),
        ("http://bob:p@ss@h/x", "http://bob:***@h/x"),
        ("http://bob:pw@[::1]:8080/x", "http://bob:***@[::1]:8080/x"),
        ("//bob:pw@h/x", "//bob:***@h/x"),
        ("bob:pw@h", "bob:***@h"),
        ("http://h/x", "http://h/x"),
        ("", ""),
    ],
)
def test_userinfo_password_is_masked_user_kept(url: str, expected: str) -> None:
    """The userinfo password becomes *** and everything else of the URL stays byte for byte."""
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIA%2F20240101&X-Amz-Signature=abcdef&x-id=GetObject",
            "https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&x-id=GetObject",
        ),
        (
            "https://acct.blob.core.windows.net/c/b?sv=2022-11-02&sr=b&sp=r&sig=abc%3D",
            "https://acct.blob.core.windows.net/c/b?sv=REDACTED&sr=REDACTED&sp=REDACTED"
            "&sig=REDACTED",
        ),
        (
            "https://d.cloudfront.net/f?Policy=eyJ&Signature=abc&Key-Pair-Id=K2",
            "https://d.cloudfront.net/f?Policy=REDACTED&Signature=REDACTED&Key-Pair-Id=REDACTED",
        ),
        (
            "https://storage.googleapis.com/b/o?X-Goog-Credential=x&X-Goog-Signature=y&a=1",
            "https://storage.googleapis.com/b/o?X-Goog-Credential=REDACTED"
            "&X-Goog-Signature=REDACTED&a=1",
        ),
        ("http://h/x?TOKEN=t&page=2", "http://h/x?TOKEN=REDACTED&page=2"),
        ("http://h/x?upload_token=t", "http://h/x?upload_token=REDACTED"),
        ("http://h/x?%73ig=t", "http://h/x?%73ig=REDACTED"),
        ("http://h/x?a=1;sig=t", "http://h/x?a=1;sig=REDACTED"),
        ("http://h/x?sig", "http://h/x?sig"),
        ("http://h/x?sig=", "http://h/x?sig=REDACTED"),
        ("http://h/x?a=1&&b=2", "http://h/x?a=1&&b=2"),
        ("http://h/x?", "http://h/x?"),
    ],
)
def test_secret_query_values_are_replaced(url: str, expected: str) -> None:
    """Values of secret-looking query keys become REDACTED; order and other params stay."""
    assert redact_url(url) == expected


def test_fragment_is_dropped() -> None:
    """The fragment is dropped: it never reaches the server and may hold an OAuth token."""
    assert redact_url("https://h/cb?a=1#access_token=" + CANARY) == "https://h/cb?a=1"


@pytest.mark.parametrize(
    "url",
    [
        f"http://bob:{CANARY}@h/x",
        f"https://bob:{CANARY}@h:443/x?y=1#z",
        f"http://bob:{CANARY}@[::1]:80/",
        f"http://:{CANARY}@h",
        f"HTTP://BOB:{CANARY}@H/",
        f"http://bob:{CANARY}@",
        f"http://bob:a@b{CANARY}@h/x",
        f"http://bob:{CANARY}/rest@h/x",
        f"http://bob:a/{CANARY}@h/x",
        f"http://bob:a?{CANARY}@h/x",
        f"http://bob:a#{CANARY}@h/x",
        f"http://bob:{CANARY}@[::1/x",
        f"http://bob:{CANARY}@h:99999999999/x",
        f"http://bob:x{CANARY}:y@h/x",
        f"http://bob:hun\n{CANARY}@h/x",
        f"//bob:{CANARY}@h/x",
        f"bob:{CANARY}@h/x",
        f"ftp://bob:{CANARY}@h/x",
        f"http://h/x?token={CANARY}",
        f"http://h/x?a=1&Signature={CANARY}&b=2",
        f"http://h/x?X-Amz-Signature={CANARY}#f",
        f"http://h/x?X-Amz-Security-Token={CANARY}",
        f"http://h/x?sig={CANARY}&sig={CANARY}",
        f"http://h/x?api_key={CANARY}",
        f"http://h/x?access_token={CANARY}",
        f"http://h/x?client_secret={CANARY}",
        f"http://h/x?password={CANARY}",
        f"http://h/x#access_token={CANARY}",
        f"http://h/x?a=b#sig={CANARY}",
        f"http://h/x?a=1;key={CANARY}",
        f"http://u:{CANARY}@h/x?sig={CANARY}#{CANARY}",
        f"http://[::1/x?sig={CANARY}",
        f"http://h:abc/x?token={CANARY}",
    ],
)
def test_canary_secret_never_survives(url: str) -> None:
    """No URL shape lets the canary password, token or signature through redact_url."""
    assert CANARY not in redact_url(url)


@given(st.text())
def test_redact_url_never_raises(url: str) -> None:
    """redact_url is total: any string gives a string."""
    assert isinstance(redact_url(url), str)


@given(
    user=st.text(alphabet=st.characters(blacklist_characters=":@/?#[]"), max_size=8),
    host=st.from_regex(r"[a-z0-9.-]{1,12}", fullmatch=True),
    tail=st.text(alphabet=st.characters(blacklist_characters="@"), max_size=20),
)
def test_canary_password_never_survives_property(user: str, host: str, tail: str) -> None:
    """Whatever surrounds it, a password in userinfo never appears in the output."""
    assert CANARY not in redact_url(f"http://{user}:{CANARY}@{host}/{tail}")


def test_secret_key_list_covers_presigned_urls() -> None:
    """The key list names the signature fields of S3, GCS, Azure SAS and CloudFront."""
    for key in ("x-amz-signature", "x-goog-signature", "sig", "signature", "key-pair-id"):
        assert key in SECRET_QUERY_KEYS


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ("login hunter2 failed", ["hunter2"], "login *** failed"),
        ("a hunter2 b hunter2", ["hunter2"], "a *** b ***"),
        ("pw p%40ss%2Fw failed", ["p@ss/w"], "pw *** failed"),
        ("pw p%40ss+w failed", ["p@ss w"], "pw *** failed"),
        ("abc is short", ["abc"], "abc is short"),
        ("nothing", [""], "nothing"),
        ("token abcdef", ["abcd", "abcdef"], "token ***"),
        ("no secrets", [], "no secrets"),
    ],
)
def test_redact_text(text: str, secrets: list[str], expected: str) -> None:
    """Each secret of 4+ chars, raw or percent-encoded, becomes ***; longer ones first."""
    assert redact_text(text, secrets) == expected


def test_redact_text_accepts_any_iterable() -> None:
    """Secrets may come from a generator, consumed once."""
    assert redact_text("x secret1 y", (s for s in ["secret1"])) == "x *** y"


def test_redact_headers_masks_sensitive_values() -> None:
    """Credential headers become *** whatever their case; others are copied unchanged."""
    headers = {
        "Authorization": "Bearer " + CANARY,
        "COOKIE": "sid=" + CANARY,
        "Proxy-Authorization": "Basic " + CANARY,
        "set-cookie": "a=" + CANARY,
        "X-Api-Key": CANARY,
        "Accept": "*/*",
        "Range": "bytes=0-",
    }
    out = redact_headers(headers)
    assert out == {
        "Authorization": "***",
        "COOKIE": "***",
        "Proxy-Authorization": "***",
        "set-cookie": "***",
        "X-Api-Key": "***",
        "Accept": "*/*",
        "Range": "bytes=0-",
    }
    assert headers["Authorization"].endswith(CANARY), "input must not be modified"


def test_redact_headers_redacts_url_valued_headers() -> None:
    """Location, Content-Location and Referer go through redact_url (presigned redirects)."""
    out = redact_headers({"Location": f"https://h/o?X-Amz-Signature={CANARY}"})
    assert out == {"Location": "https://h/o?X-Amz-Signature=REDACTED"}


def test_sensitive_headers_are_lower_case() -> None:
    """SENSITIVE_HEADERS holds lower-case names, the form callers compare against."""
    assert all(name == name.lower() for name in SENSITIVE_HEADERS)
    assert {"authorization", "cookie", "proxy-authorization", "set-cookie", "x-api-key"} <= (
        SENSITIVE_HEADERS
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://bob:hun%40ter2@h:8/x", ["hun%40ter2", "hun@ter2"]),
        ("http://h/x?token=abc123&x=1", ["abc123"]),
        ("http://h/x?x=1&sig=zz%2Fyy#frag", ["zz%2Fyy", "zz/yy"]),
        ("http://bob@h/x?page=2", []),
        ("http://h/x", []),
    ],
)
def test_url_secrets_lists_password_and_secret_query_values(url: str, expected: list[str]) -> None:
    """url_secrets names the password and secret query values, raw and decoded, nothing else."""
    assert url_secrets(url) == expected


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("bad proxy http://u:Pw0rd!x@[::1 here", "bad proxy http://u:***@[::1 here"),
        ("socks5://user:s3cret@h:1080", "socks5://user:***@h:1080"),
        ("'http://a:b@h/'", "'http://a:***@h/'"),
        ("mail me@example.org, http://h/x@y", "mail me@example.org, http://h/x@y"),
    ],
)
def test_redact_text_masks_any_quoted_url_password(text: str, shown: str) -> None:
    """A URL password quoted in any text (another URL than the request's) is masked."""
    assert redact_text(text) == shown
