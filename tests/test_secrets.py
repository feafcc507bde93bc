"""Secrets stay secret (streamer/core/redact.py, streamer/core/redirects.py).

A canary password in the URL's userinfo and canary values in ``X-Amz-Signature=`` and
``token=`` must never show in what `streamer get` prints (stdout, stderr with the progress bar
forced on, ``--json``), in the files it leaves (the sidecar), or in the str/repr/traceback of
the Python API's errors and results, whatever the outcome: a 404, a body cut mid-way with a
partial kept, a redirect to another origin, a refused connection, a success. Credentials given
with ``-H`` do not follow a redirect to another origin.
"""

from __future__ import annotations

import asyncio
import base64
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from streamer import Client, StreamerError
from streamer.core.retry import RetryPolicy
from tests.faults import SEEN
from tests.helpers import Run, closed_port, running_slow_server, streamer
from tests.slow_server import MIB, Resource, SlowServer

USER = "alice"
PASSWORD = "s3cr%24t-CANARY-pw"  # as written in the URL: percent-encoded "$"
PASSWORD_DECODED = "s3cr$t-CANARY-pw"
SIGNATURE = "CANARY-amz-sig-0a1b2c"
TOKEN = "CANARY-tok-9f8e7d"
HOP_SIGNATURE = "CANARY-hop-sig-55aa"  # the presigned URL of the redirect's target
QUERY = f"X-Amz-Signature={SIGNATURE}&token={TOKEN}&part=1"
USERINFO = f"{USER}:{PASSWORD}"

FORBIDDEN = [
    "CANARY",
    PASSWORD,
    PASSWORD_DECODED,
    base64.b64encode(f"{USER}:{PASSWORD_DECODED}".encode()).decode(),
]


def assert_clean(where: str, text: str | bytes) -> None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    for secret in FORBIDDEN:
        assert secret not in text, f"{secret!r} leaked into {where}: {text[:2000]}"


@pytest.fixture
async def origin_a() -> AsyncIterator[SlowServer]:
    async with running_slow_server() as server:
        yield server


@pytest.fixture
async def origin_b() -> AsyncIterator[SlowServer]:
    async with running_slow_server() as server:
        yield server


@dataclass(frozen=True)
class Scenario:
    name: str
    rc: int  # the CLI's exit code
    leaves_partial: bool = False
    healed_by_retry: bool = False  # a retry resumes past the fault and succeeds

    def expect(self, retried: bool) -> tuple[int, bool]:
        """(exit code, partial kept) for a run with or without one retry."""
        if retried and self.healed_by_retry:
            return 0, False
        return self.rc, self.leaves_partial


SCENARIOS = [
    Scenario("not-found", 22),
    Scenario("cut", 18, leaves_partial=True, healed_by_retry=True),
    Scenario("cross-origin-redirect", 0),
    Scenario("refused", 7),
    Scenario("success", 0),
]


def secret_url(a: SlowServer, b: SlowServer, scenario: str) -> str:
    """The scenario's URL, carrying the canary password, signature and token."""
    b.resources["landing.bin"] = Resource(size=50_000)
    hop_to = b.url("landing.bin", query=f"X-Amz-Signature={HOP_SIGNATURE}")
    a.resources.update(
        {
            "not-found": Resource(status=404),
            "cut": Resource(size=2 * MIB, cut_at=MIB, once=False),
            "cross-origin-redirect": Resource(redirect=hop_to),
            "success": Resource(size=50_000),
        }
    )
    if scenario == "refused":
        return f"http://{USERINFO}@127.0.0.1:{closed_port()}/r/refused?{QUERY}"
    return a.url(scenario, userinfo=USERINFO, query=QUERY)


def all_files_clean(work: Path) -> None:
    for path in work.rglob("*"):
        if path.is_file():
            assert_clean(f"file {path.name}", path.read_bytes())


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_cli_never_prints_or_stores_url_secrets(
    origin_a: SlowServer, origin_b: SlowServer, tmp_path: Path, scenario: Scenario
) -> None:
    """No canary in stdout, stderr (--progress forced), --json, or any file left, per outcome."""
    url = secret_url(origin_a, origin_b, scenario.name)
    json_dir, bar_dir = tmp_path / "json", tmp_path / "bar"
    json_dir.mkdir()
    bar_dir.mkdir()
    json_run, bar_run = await asyncio.gather(
        streamer(
            "get",
            url,
            "-o",
            str(json_dir / "out.bin"),
            "--json",
            "--retry",
            "1",
            "--retry-delay",
            "0.05",
            "--connect-timeout",
            "5",
        ),
        streamer(
            "get", url, "-o", str(bar_dir / "out.bin"), "--progress", "--connect-timeout", "5"
        ),
    )
    runs: dict[str, Run] = {"--json": json_run, "--progress": bar_run}
    for label, run in runs.items():
        assert run.rc == scenario.expect(retried=label == "--json")[0], (label, run)
        assert_clean(f"stdout of {label}", run.out)
        assert_clean(f"stderr of {label}", run.err)
    doc = json_run.json()
    assert "REDACTED" in doc["url"]  # the URL is shown, with the secrets masked
    if bar_run.rc == 0:
        assert "\r" in bar_run.err or "%" in bar_run.err  # the bar really was drawn
        assert "REDACTED" in doc["final_url"]
    for work, retried in ((json_dir, True), (bar_dir, False)):
        sidecar = work / "out.bin.part.json"
        assert sidecar.exists() is scenario.expect(retried)[1]
        all_files_clean(work)
    if scenario.name == "cross-origin-redirect":
        # The URL's credentials went to origin A (as Basic auth), and not on to origin B.
        asked = origin_a.requests_for(scenario.name)
        hops = origin_b.requests_for("landing.bin")
        assert len(asked) == len(hops) == 2
        assert all(lower(r.headers).get("authorization", "").startswith("Basic ") for r in asked)
        assert all("authorization" not in lower(r.headers) for r in hops)


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
async def test_api_errors_and_results_never_show_url_secrets(
    origin_a: SlowServer, origin_b: SlowServer, tmp_path: Path, scenario: Scenario
) -> None:
    """No canary in str/repr/fields/traceback of a StreamerError, or in a DownloadResult."""
    url = secret_url(origin_a, origin_b, scenario.name)
    target = tmp_path / "out.bin"
    async with Client(connect_timeout=5.0, read_timeout=5.0, trust_env=False) as client:
        try:
            result = await client.download(url, target, retry=RetryPolicy(retries=1, delay=0.05))
        except StreamerError as exc:
            assert scenario.expect(retried=True)[0] != 0, exc
            assert_clean("str(error)", str(exc))
            assert_clean("repr(error)", repr(exc))
            assert_clean("error fields", repr(vars(exc)))
            assert_clean("error traceback", "".join(traceback.format_exception(exc)))
            assert "REDACTED" in exc.url
        else:
            assert scenario.expect(retried=True)[0] == 0
            assert_clean("repr(result)", repr(result))
            assert_clean("result JSON", repr(result.to_json()))
    assert (target.with_name("out.bin.part.json")).exists() is scenario.expect(retried=True)[1]
    all_files_clean(tmp_path)


async def test_authorization_header_not_sent_to_another_origin(
    fault_server: TestServer, fault_server2: TestServer, tmp_path: Path
) -> None:
    """-H Authorization and URL credentials reach the first origin only, never the redirect's."""
    landing = str(fault_server2.make_url("/bytes/100"))
    first = fault_server.make_url("/to").with_query(url=landing)
    url = str(first).replace("http://", f"http://{USERINFO}@", 1)
    run = await streamer(
        "get",
        url,
        "-o",
        str(tmp_path / "out.bin"),
        "-q",
        "-H",
        "Authorization: Bearer CANARY-header-token",
        "-H",
        "Cookie: session=CANARY-cookie",
        "-H",
        "X-Trace: kept",
    )
    assert run.rc == 0, run
    assert_clean("stderr", run.err)
    [asked] = fault_server.app[SEEN]
    assert asked.headers.get("Authorization") == "Bearer CANARY-header-token"
    [hop] = fault_server2.app[SEEN]
    lowered = lower(hop.headers)
    assert "authorization" not in lowered, hop.headers
    assert "cookie" not in lowered, hop.headers
    assert lowered.get("x-trace") == "kept"  # other headers do follow
    assert (tmp_path / "out.bin").stat().st_size == 100


async def test_gave_up_message_names_the_url_once(tmp_path: Path) -> None:
    """The one-line error after exhausted retries shows the (redacted) URL once, not twice."""
    url = f"http://{USERINFO}@127.0.0.1:{closed_port()}/r/x?{QUERY}"
    async with Client(connect_timeout=5.0, trust_env=False) as client:
        with pytest.raises(StreamerError) as caught:
            await client.download(url, tmp_path / "x", retry=RetryPolicy(retries=1, delay=0.01))
    text = str(caught.value)
    assert "gave up after 2 attempts" in text
    assert_clean("str(error)", text)
    assert text.count("127.0.0.1:") == 2, text  # the URL once, plus "cannot connect to HOST:PORT"
