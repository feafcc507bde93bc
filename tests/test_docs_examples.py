"""docs/godot.md: every python block runs for real (own process, empty directory, 30 s)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "godot.md"
TIMEOUT = 30.0
_VENV_PYTHON = REPO / ".venv" / "bin" / "python"
PYTHON = str(_VENV_PYTHON) if _VENV_PYTHON.exists() else sys.executable

BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
NAME = re.compile(r"\A# example: ([a-z0-9-]+)\n")

# Godot names the document must map (a missing one means the mapping fell behind).
_GODOT_NAMES_TEXT = """
accept_gzip body_size_limit download_chunk_size download_file max_redirects timeout use_threads
request( request_raw( cancel_request( get_body_size( get_downloaded_bytes(
get_http_client_status( set_http_proxy( set_https_proxy( set_tls_options( request_completed
RESULT_SUCCESS RESULT_CHUNKED_BODY_SIZE_MISMATCH RESULT_CANT_CONNECT RESULT_CANT_RESOLVE
RESULT_CONNECTION_ERROR RESULT_TLS_HANDSHAKE_ERROR RESULT_NO_RESPONSE
RESULT_BODY_SIZE_LIMIT_EXCEEDED RESULT_BODY_DECOMPRESS_FAILED RESULT_REQUEST_FAILED
RESULT_DOWNLOAD_FILE_CANT_OPEN RESULT_DOWNLOAD_FILE_WRITE_ERROR RESULT_REDIRECT_LIMIT_REACHED
RESULT_TIMEOUT
connect_to_host poll( request( read_response_body_chunk( get_response_body_length(
is_response_chunked( get_response_headers( get_response_headers_as_dictionary(
get_response_code( has_response( get_status( read_chunk_size blocking_mode_enabled close(
query_string_from_dict(
STATUS_DISCONNECTED STATUS_RESOLVING STATUS_CANT_RESOLVE STATUS_CONNECTING STATUS_CANT_CONNECT
STATUS_CONNECTED STATUS_REQUESTING STATUS_BODY STATUS_CONNECTION_ERROR STATUS_TLS_HANDSHAKE_ERROR
"""
GODOT_NAMES = _GODOT_NAMES_TEXT.split()


@dataclass(frozen=True)
class Example:
    name: str
    code: str


def _examples() -> list[Example]:
    text = DOC.read_text(encoding="utf-8")
    found = []
    for i, match in enumerate(BLOCK.finditer(text)):
        code = match.group(1)
        name = NAME.match(code)
        found.append(Example(name.group(1) if name else f"unnamed-{i}", code))
    return found


EXAMPLES = _examples()


@dataclass(frozen=True)
class Outcome:
    returncode: int | None
    output: str


def _clean_env() -> dict[str, str]:
    """The caller's environment without proxies (examples talk to 127.0.0.1 only)."""
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}


def _text(data: bytes | str | None) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _run(example: Example, workdir: Path) -> Outcome:
    script = workdir / "example.py"
    script.write_text(example.code, encoding="utf-8")
    try:
        done = subprocess.run(
            [PYTHON, str(script)],
            cwd=workdir,
            env=_clean_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = "".join(_text(part) for part in (exc.stdout, exc.stderr))
        return Outcome(None, f"timed out after {TIMEOUT} s\n{output}")
    return Outcome(done.returncode, done.stdout + done.stderr)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Outcome]:
    """Run all examples once, a few at a time, each in its own empty directory."""
    dirs = {ex.name: tmp_path_factory.mktemp(ex.name) for ex in EXAMPLES}
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        futures = {ex.name: pool.submit(_run, ex, dirs[ex.name]) for ex in EXAMPLES}
        return {name: future.result() for name, future in futures.items()}


def test_doc_has_named_examples() -> None:
    """Every python block starts with a unique '# example: NAME' line."""
    names = [ex.name for ex in EXAMPLES]
    assert len(names) >= 20
    assert not [n for n in names if n.startswith("unnamed-")]
    assert len(set(names)) == len(names)


def test_doc_maps_every_godot_name() -> None:
    """Each Godot HTTPRequest/HTTPClient member and enum value is named in the document."""
    text = DOC.read_text(encoding="utf-8")
    assert [name for name in GODOT_NAMES if name not in text] == []


# The first test also waits for the module fixture that runs every example.
@pytest.mark.timeout(240)
@pytest.mark.parametrize(
    "example",
    [pytest.param(ex, id=ex.name) for ex in EXAMPLES],
)
def test_example_runs(example: Example, outcomes: dict[str, Outcome]) -> None:
    """The example exits 0 within 30 s when run as a script in an empty directory."""
    outcome = outcomes[example.name]
    assert outcome.returncode == 0, outcome.output[-3000:]
