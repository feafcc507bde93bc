"""streamer.core.wire: the request URL goes on the wire as given, but for what cannot go there."""

from __future__ import annotations

import pytest

from streamer.core.wire import wire_url, with_file_name


@pytest.mark.parametrize(
    "url",
    [
        "http://h/p?sig=a%2Bb%2Fc%3D&next=%2Fx%3Fy&t=%7E%41",
        "https://h:8443/a%2fb/%7e?x=%41%42&y=1+2&z=a;b,c:d@e!f$g'h(i)j*k",
        "http://h/?",
        "http://h/x??a=1",
    ],
)
def test_sendable_urls_are_kept_byte_for_byte(url: str) -> None:
    """Escapes keep their case and are not decoded (signed URLs sign these bytes)."""
    assert wire_url(url) == url


def test_unsendable_characters_are_encoded_as_utf8() -> None:
    """Space, non-ASCII, quotes, braces and a stray % are encoded; nothing else changes."""
    assert wire_url('http://h/a b/é?q=x y&w="{}"&p=%zz&ok=%2f') == (
        "http://h/a%20b/%C3%A9?q=x%20y&w=%22%7B%7D%22&p=%25zz&ok=%2f"
    )


def test_fragment_dot_segments_and_idna() -> None:
    """The fragment is never sent (RFC 3986 3.5), dot segments are removed (5.2.4), a
    non-ASCII host is IDNA-encoded, an empty path is '/'."""
    assert wire_url("http://h/a/./b/../c#frag") == "http://h/a/c"
    assert wire_url("http://h/a/..") == "http://h/"
    assert wire_url("http://bücher.example:81/x") == "http://xn--bcher-kva.example:81/x"
    assert wire_url("http://h") == "http://h/"


def test_with_file_name_follows_curl_upload_rules() -> None:
    """curl -T: the name is appended (encoded whole) only when the URL has no file part."""
    assert with_file_name("http://h/dir/", "my file.txt") == "http://h/dir/my%20file.txt"
    assert with_file_name("http://h", "a?b") == "http://h/a%3Fb"
    assert with_file_name("http://h/dir/?x=1", "f") == "http://h/dir/f?x=1"
    assert with_file_name("http://h/dir/name", "f") == "http://h/dir/name"
