"""The public surface of `streamer`: exported names, sync facades, errors, exit codes, purity."""

from __future__ import annotations

import errno
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import streamer
from streamer import Client, ClientConfig, HTTPStatusError, Result, StreamerError, UsageError
from streamer import errors as errors_mod
from streamer.errors import EXIT_CODES, exit_code
from tests.helpers import ThreadedServer

PACKAGE_DIR = Path(streamer.__file__).resolve().parent
CORE_MODULES = sorted(
    "streamer.core" if p.stem == "__init__" else f"streamer.core.{p.stem}"
    for p in (PACKAGE_DIR / "core").glob("*.py")
)
IO_MODULES = ("aiohttp", "aiofiles", "tqdm", "asyncio", "socket", "ssl")
DATA = bytes(range(256)) * 100


@pytest.fixture
def thread_server(tmp_path: Path) -> Any:
    root = tmp_path / "srv"
    root.mkdir()
    (root / "data.bin").write_bytes(DATA)
    with ThreadedServer(root) as base:
        yield base


# --- exported names ----------------------------------------------------------------------------


def test_all_is_the_public_namespace_sorted() -> None:
    """streamer.__all__ is exactly the package's public names (those bound at import and those
    loaded on first use), in sorted order: a name added without exporting it, or exported
    without existing, fails."""
    import types

    bound = {
        name
        for name, value in vars(streamer).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    public = (bound - {"TYPE_CHECKING", "Any"}) | set(streamer._LAZY) | {"__version__"}
    assert streamer.__all__ == sorted(public)


def test_every_exported_name_importable() -> None:
    """Every name in __all__ exists, and `from streamer import *` binds all of them."""
    for name in streamer.__all__:
        assert getattr(streamer, name, None) is not None, name
    namespace: dict[str, Any] = {}
    exec("from streamer import *", namespace)
    assert set(streamer.__all__) <= set(namespace)


def test_exported_errors_are_the_whole_tree() -> None:
    """Every StreamerError subclass defined in streamer.errors is exported from streamer."""
    defined = {
        name
        for name, obj in vars(errors_mod).items()
        if isinstance(obj, type) and issubclass(obj, StreamerError)
    }
    assert defined <= set(streamer.__all__)


# --- sync facades ------------------------------------------------------------------------------


def test_sync_download_and_fetch(thread_server: str, tmp_path: Path) -> None:
    """streamer.download / streamer.fetch run their own loop and return complete results."""
    out = tmp_path / "out.bin"
    result = streamer.download(thread_server + "data.bin", out, trust_env=False)
    assert out.read_bytes() == DATA
    assert (result.size, result.status, result.result) == (len(DATA), 200, Result.SUCCESS)
    assert result.path == out
    fetched = streamer.fetch(thread_server + "data.bin", trust_env=False)
    assert fetched.body == DATA
    assert fetched.status == 200


def test_sync_facades_raise_typed_errors(thread_server: str, tmp_path: Path) -> None:
    """A 404 through the sync facades is HTTPStatusError(404); download leaves no file."""
    url = thread_server + "missing.bin"
    with pytest.raises(HTTPStatusError) as info:
        streamer.fetch(url, trust_env=False)
    assert info.value.status == 404
    out = tmp_path / "out.bin"
    with pytest.raises(HTTPStatusError):
        streamer.download(url, out, trust_env=False)
    assert not out.exists()
    assert not (tmp_path / "out.bin.part").exists()


def test_sync_facade_unknown_option_named() -> None:
    """An unknown keyword of the sync facade is a UsageError naming it (no typo passes)."""
    with pytest.raises(UsageError, match="conect_timeout"):
        streamer.fetch("http://127.0.0.1:9/x", conect_timeout=3)


async def test_sync_facade_inside_running_loop_is_usage_error(tmp_path: Path) -> None:
    """Calling the sync facade inside a running event loop raises UsageError, touching nothing."""
    out = tmp_path / "x.bin"
    with pytest.raises(UsageError, match="event loop"):
        streamer.download("http://127.0.0.1:9/x.bin", out)
    with pytest.raises(UsageError, match="event loop"):
        streamer.fetch("http://127.0.0.1:9/x.bin")
    assert list(tmp_path.iterdir()) == []


def test_unknown_client_option_named() -> None:
    """Client(**options) names an unknown option; config plus options together is refused."""
    with pytest.raises(UsageError, match="chunk_sise"):
        Client(chunk_sise=1024)
    with pytest.raises(UsageError):
        Client(ClientConfig(), verify=False)
    assert Client(chunk_size=1024).config.chunk_size == 1024


# --- errors ------------------------------------------------------------------------------------


def _all_error_classes() -> list[type[StreamerError]]:
    seen: list[type[StreamerError]] = []
    todo: list[type[StreamerError]] = [StreamerError]
    while todo:
        cls = todo.pop()
        if cls not in seen and cls.__module__ == "streamer.errors":
            seen.append(cls)
            todo.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: c.__name__)


EXTRA_ARGS: dict[str, dict[str, Any]] = {
    "BodyTruncatedError": {"received": 10, "expected": 20},
    "HTTPStatusError": {"status": 503, "reason": "Service Unavailable"},
    "S3Error": {"status": 403, "reason": "Forbidden", "code": "AccessDenied"},
    "BodyTooLarge": {"limit": 1024},
    "ChecksumMismatch": {"expected": "ab" * 32, "actual": "cd" * 32},
}


@pytest.mark.parametrize("cls", _all_error_classes(), ids=lambda c: c.__name__)
def test_errors_pickle_round_trip(cls: type[StreamerError]) -> None:
    """Pickling keeps type, message, url, path, fields and non-default result/retryable."""
    extra = EXTRA_ARGS.get(cls.__name__, {})
    result = Result.TOO_SLOW if cls.default_result is not Result.TOO_SLOW else Result.TIMEOUT
    err = cls(
        "went wrong",
        url="http://user:***@h.example/p",
        result=result,
        retryable=not cls.default_retryable,
        path="/tmp/x",
        **extra,
    )
    copy = pickle.loads(pickle.dumps(err))
    assert type(copy) is cls
    assert str(copy) == str(err)
    assert copy.message == "went wrong"
    assert (copy.url, copy.result, copy.retryable, copy.path) == (
        err.url,
        result,
        not cls.default_retryable,
        "/tmp/x",
    )
    for name, value in extra.items():
        assert getattr(copy, name) == value, name
    assert copy.exit_code == exit_code(result)


def test_file_error_keeps_errno_through_pickle() -> None:
    """A FileError made from an OSError keeps its errno across a process boundary."""
    from streamer.storage.files import file_error

    err = file_error(
        OSError(errno.ENOSPC, "No space left on device"),
        Path("/data/out.bin.part"),
        "write",
        Result.DOWNLOAD_FILE_WRITE_ERROR,
    )
    assert err.errno == errno.ENOSPC
    copy = pickle.loads(pickle.dumps(err))
    assert copy.errno == errno.ENOSPC


def test_every_result_has_its_own_nonzero_exit_code() -> None:
    """Every Result is in EXIT_CODES (no fallback), 0 only for SUCCESS, all within 1..255."""
    for result in Result:
        assert result in EXIT_CODES, result
        code = exit_code(result)
        if result is Result.SUCCESS:
            assert code == 0
        else:
            assert 0 < code < 256, (result, code)


@pytest.mark.parametrize(
    ("cls_name", "code"),
    [
        ("UsageError", 2),
        ("ResolveError", 6),
        ("ConnectError", 7),
        ("ProtocolError", 8),
        ("BodyTruncatedError", 18),
        ("HTTPStatusError", 22),
        ("FileError", 23),
        ("TransferTimeout", 28),
        ("TooSlowError", 28),
        ("TLSError", 35),
        ("TooManyRedirects", 47),
        ("CertificateError", 60),
        ("DecompressError", 61),
        ("BodyTooLarge", 63),
        ("FileExistsError_", 73),
        ("ChecksumMismatch", 80),
        ("UnsafeRedirect", 81),
        ("TargetBusyError", 82),
        ("SourceChangedError", 83),
        ("Cancelled", 130),
    ],
)
def test_error_class_default_exit_codes(cls_name: str, code: int) -> None:
    """Each error class maps by default to curl's exit code for that failure (or ours)."""
    cls = getattr(errors_mod, cls_name)
    err = cls("x", **EXTRA_ARGS.get(cls_name, {}))
    assert err.exit_code == code


def test_stdlib_bases_kept() -> None:
    """except ValueError / TimeoutError / OSError / FileExistsError still catch our errors."""
    assert issubclass(streamer.UsageError, ValueError)
    assert issubclass(streamer.TransferTimeout, TimeoutError)
    assert issubclass(streamer.FileError, OSError)
    assert issubclass(streamer.FileExistsError_, FileExistsError)


# --- the pure core -----------------------------------------------------------------------------

_PROBE = """
import json, sys, types
io = {io!r}
before = sorted(m for m in sys.modules if m.split(".")[0] in io)
if {stub!r}:
    pkg = types.ModuleType("streamer")
    pkg.__path__ = [{pkg_dir!r}]
    sys.modules["streamer"] = pkg
import importlib
importlib.import_module({module!r})
after = sorted(m for m in sys.modules if m.split(".")[0] in io)
print(json.dumps({{"before": before, "after": after}}))
"""


def _io_modules_after_imports(modules: list[str], *, stub_package: bool) -> dict[str, list[str]]:
    """For each module: the I/O libraries loaded by importing it alone in a fresh interpreter."""
    procs = {}
    for module in modules:
        code = _PROBE.format(
            io=IO_MODULES, stub=stub_package, pkg_dir=str(PACKAGE_DIR), module=module
        )
        procs[module] = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    reports: dict[str, list[str]] = {}
    try:
        for module, proc in procs.items():
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            report = json.loads(out)
            assert report["before"] == [], f"the interpreter itself loaded {report['before']}"
            reports[module] = sorted({m.split(".")[0] for m in report["after"]})
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return reports


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_module_imports_no_io_library(module: str) -> None:
    """A core module alone (package __init__ stubbed) loads no aiohttp/asyncio/socket/ssl..."""
    assert _io_modules_after_imports([module], stub_package=True) == {module: []}


def test_core_import_through_package_loads_no_io_library() -> None:
    """`import streamer.core.X` in a fresh interpreter loads no I/O library, for every X."""
    reports = _io_modules_after_imports(CORE_MODULES, stub_package=False)
    offenders = {module: loaded for module, loaded in reports.items() if loaded}
    assert offenders == {}
