"""Each fast path of the manifest and lane code gives exactly what its full path gives.

The fast paths (one regex match instead of urlsplit, normalisation and the like) exist for
speed only; these properties pin that they never change an answer.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamer.core.http1 import _simple_request_slow, simple_request
from streamer.core.manifest import check_url, check_url_full
from streamer.core.names import safe_name, safe_name_full
from streamer.core.targets import key_of_normal, normal_path, target_key
from streamer.errors import UsageError

# Pieces that make URLs near the edges of the fast patterns: case, ports, escapes, dots.
_HOSTS = st.sampled_from(
    ["a", "h.example", "127.0.0.1", "A.example", "x-y.z", "[::1]", "ex_a", "-a"]
)
_PORTS = st.sampled_from(
    ["", ":80", ":443", ":8080", ":0", ":65535", ":65536", ":99999", ":", ":x"]
)
_SEGMENT = st.text(alphabet="aZ09.-_~%2eEfF/?#!$&'()*+,;=:@ \t[]", max_size=12)
_SCHEMES = st.sampled_from(["http", "https", "HTTP", "ftp"])


@st.composite
def urls(draw: st.DrawFn) -> str:
    return f"{draw(_SCHEMES)}://{draw(_HOSTS)}{draw(_PORTS)}/{draw(_SEGMENT)}"


def _outcome(fn: object, url: str) -> object:
    try:
        return fn(url)  # type: ignore[operator]
    except UsageError as exc:
        return ("UsageError", exc.message)


@given(urls())
def test_check_url_fast_path_agrees_with_full_checks(url: str) -> None:
    """check_url accepts or refuses exactly as its full checks (urlsplit, port, host) do."""
    assert _outcome(check_url, url) == _outcome(check_url_full, url)


@given(urls())
def test_simple_request_fast_path_agrees_with_urlsplit_path(url: str) -> None:
    """simple_request's one-match path gives the same origin and target as the urlsplit one."""
    assert simple_request(url) == _simple_request_slow(url)


@given(st.text(alphabet="aZ09._- ~CONconPRN\u00e9/\\:", max_size=20))
def test_safe_name_fast_path_agrees_with_full_rules(name: str) -> None:
    """safe_name returns for a plain name exactly what its full cleaning would."""
    assert safe_name(name) == safe_name_full(name)


@given(st.text(alphabet="ab./\u00e9e\u0301", max_size=12))
def test_target_key_fast_path_agrees_with_normalised_path(relpath: str) -> None:
    """target_key (with its shortcut for one-component ASCII paths) is the key of the normal
    spelling, for every path."""
    assert target_key(relpath) == key_of_normal(normal_path(relpath))


@pytest.mark.parametrize("name", ["CON", "con.txt", "a.", ".a", "a b", "x" * 201])
def test_safe_name_fast_path_leaves_edge_cases_to_the_full_rules(name: str) -> None:
    """Reserved names, edge dots, spaces and long names never take the fast path."""
    assert safe_name(name) == safe_name_full(name)
