"""The package's layers: imports point one way, and every package imports on its own.

cli -> client/sync -> transfer -> http | lane | storage -> core; errors, config and results
are the shared vocabulary every layer may use. Every import is checked, the lazy ones inside
functions and those under TYPE_CHECKING included, so a cycle cannot hide in a function body.
A new package or top-level module fails here until its layer is decided in ALLOWED.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import streamer

PACKAGE = Path(streamer.__file__).resolve().parent
SUBPACKAGES = {"core", "http", "lane", "storage", "transfer", "cli", "server"}
BASE = {"errors", "config", "results"}

# What each layer may import, besides itself.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "environment": set(),
    "config": {"errors", "core", "streamer"},  # `from . import __version__`; core.headers
    "results": {"errors", "core"},
    "core": {"errors"},
    "progress": {"core", "errors"},
    "storage": {"core", *BASE},
    "http": {"core", *BASE},
    "lane": {"core", "storage", *BASE},
    "transfer": {"core", "http", "lane", "storage", *BASE},
    "server": {"core", "storage", *BASE},
    "client": {
        "core",
        "http",
        "lane",
        "storage",
        "transfer",
        "s3client",
        "tusclient",
        "environment",
        *BASE,
    },
    "s3client": {"core", "transfer", *BASE},  # Client's S3 methods (a mixin)
    "tusclient": {"core", "transfer", *BASE},  # Client's tus methods (a mixin)
    "sync": {"client", "core", "http", "transfer", *BASE},
    # Bulk runs on a Dask cluster: beside client/sync, above transfer.
    "distributed": {"client", "sync", "core", "storage", "transfer", *BASE},
    "cli": {
        "client",
        "sync",
        "core",
        "http",
        "lane",
        "storage",
        "transfer",
        "server",
        "progress",
        "streamer",
        "distributed",
        *BASE,
    },
    "streamer": {"client", "sync", "core", "http", "transfer", *BASE},  # __init__ (lazy names)
    "__main__": {"cli"},
}


def _layer(module: str) -> str:
    """`streamer.transfer.bulk` -> "transfer"; `streamer.errors` -> "errors"."""
    parts = module.split(".")
    return "streamer" if len(parts) == 1 else parts[1]


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _imports(path: Path) -> set[str]:
    """Every streamer module `path` imports, at any depth of its code."""
    name, is_pkg = _module_name(path)
    package = name if is_pkg else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join([*base, *([node.module] if node.module else [])])
            if node.module is None:  # from . import x: x may be a module or a name
                found.update(f"{target}.{a.name}" for a in node.names)
            else:
                found.add(target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("streamer"):
            found.add(str(node.module))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("streamer"))
    return found


def _real(module: str) -> str:
    """`streamer.x.name` where name is not a module -> `streamer.x`."""
    rel = module.split(".")[1:]
    path = PACKAGE.joinpath(*rel)
    if path.is_dir() or path.with_suffix(".py").exists():
        return module
    return module.rsplit(".", 1)[0]


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down_the_layers(path: Path) -> None:
    """A module imports only from its own layer and the layers below it."""
    layer = _layer(_module_name(path)[0])
    assert layer in ALLOWED, f"{layer}: decide this layer's place in ALLOWED"
    wrong = sorted(
        target
        for target in map(_real, _imports(path))
        if _layer(target) not in (ALLOWED[layer] | {layer})
    )
    assert not wrong, f"{path.relative_to(PACKAGE)} imports upward: {wrong}"


def test_cli_commands_never_import_main() -> None:
    """cli/main.py is parser and dispatch; the commands do not import it back."""
    for path in (PACKAGE / "cli").glob("*.py"):
        if path.name != "main.py":
            assert "streamer.cli.main" not in _imports(path), path.name


@pytest.mark.parametrize("package", sorted(SUBPACKAGES | {"client", "sync", "errors"}))
def test_each_package_imports_first_in_a_fresh_interpreter(package: str) -> None:
    """Importing any one package first, then each of its modules, works: no import cycle
    depends on which part of streamer happened to be loaded before."""
    module = f"streamer.{package}"
    modules = [module] + [
        f"{module}.{p.stem}"
        for p in sorted((PACKAGE / package).glob("*.py"))
        if package in SUBPACKAGES and p.stem != "__init__"
    ]
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    done = subprocess.run(
        [sys.executable, "-c", code, *modules],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-800:]


def test_no_module_is_over_the_size_limit() -> None:
    """Modules stay small (about 400 lines at most), so each keeps one job."""
    over = {
        str(p.relative_to(PACKAGE)): n
        for p in MODULES
        if (n := len(p.read_text().splitlines())) > 440
    }
    assert not over, over


# What a command line may load (streamer/cli/main.py). Start-up is part of every small transfer:
# the parse alone (--version, --help, a usage error) runs no event loop and no I/O library, and a
# command loads only what it uses. A name covers its submodules.
PARSE_ONLY_LOADS_NONE_OF = (
    "asyncio",
    "aiohttp",
    "aiofiles",
    "tqdm",
    "ssl",
    "ctypes",
    "email.utils",
    "fractions",
    "xml",
    "streamer.client",
    "streamer.sync",
    "streamer.config",
    "streamer.http",
    "streamer.lane",
    "streamer.storage",
    "streamer.transfer",
    "streamer.server",
    "streamer.core.s3",
    "streamer.cli.contract",
    "streamer.cli.demo",
)
# Whatever the command: never the S3 signer's library, Dask, or another command's machinery.
NO_COMMAND_LOADS = ("botocore", "dask", "distributed", "streamer.distributed", "streamer.cli.demo")
# A plain download with the bar off: no bar, no threaded file reads, no bulk run, no server.
GET_LOADS_NONE_OF = (
    *NO_COMMAND_LOADS,
    "tqdm",
    "aiofiles",
    "streamer.server",
    "streamer.transfer.bulk",
    "streamer.storage.journal",
    "streamer.core.manifest",
    "streamer.cli.bulk",
    "streamer.cli.shards",
    "xml",
    # the upload machinery loads with the first upload (client.py)
    "streamer.transfer.upload",
    "streamer.http.bodies",
    "streamer.lane.sendbody",
    "streamer.core.multipart",
)
# An upload (plain or tus) with the bar off: no bar, no bulk run, no server, no download's lane,
# no download machinery (resume planning, partial files: ~10 ms of start-up) and no S3 module
# (an s3:// URL is told apart by `core.wire.is_s3_url`).
PUT_LOADS_NONE_OF = (
    *NO_COMMAND_LOADS,
    "tqdm",
    "streamer.server",
    "streamer.transfer.bulk",
    "streamer.core.manifest",
    "streamer.cli.bulk",
    "streamer.transfer.download",
    "streamer.transfer.fastopen",
    "streamer.core.resume",
    "streamer.storage.partial",
    "streamer.core.s3",
    "streamer.transfer.s3",
    "encodings.idna",  # to an IP literal (127.0.0.1 here): no resolver thread, no IDNA codec
)
# A bulk run whose files all take the lane (small, plain http), bar off: no aiohttp, no bar, no
# server, no upload machinery, and none of the full engine's download path or its result types
# (transfer/download.py and what it pulls in: ~10 ms before the first request).
BULK_LOADS_NONE_OF = (
    *NO_COMMAND_LOADS,
    "aiohttp",
    "tqdm",
    "aiofiles",
    "streamer.server",
    "streamer.http",
    "streamer.transfer.upload",
    "streamer.transfer.download",
    "streamer.transfer.fastopen",
    "streamer.transfer.fastpath",
    "streamer.storage.direct",
    "streamer.results",
    "streamer.core.events",  # progress events: the bulk run reports results, not phases
    "streamer.storage.partial",  # the lane writes no sidecar (atomic.SIDECAR_MIN)
    "streamer.core.resume",
)
# Runs the command line in a fresh interpreter, then writes the names of the loaded modules.
_LOADED = (
    "import json, sys\n"
    "from streamer.cli.main import main\n"
    "code = main(sys.argv[2:])\n"
    "with open(sys.argv[1], 'w') as f:\n"
    "    json.dump(sorted(sys.modules), f)\n"
    "raise SystemExit(code)\n"
)


def _loaded_by(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules `streamer ARGV` has loaded when it returns (it must exit 0 or 2)."""
    names = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", _LOADED, str(names), *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode in (0, 2), done.stderr[-800:]
    return set(json.loads(names.read_text()))


def _among(loaded: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(m == n or m.startswith(f"{n}.") for m in loaded))


def test_the_command_line_loads_no_io_library_before_a_command_needs_it() -> None:
    """Building the parser loads neither aiohttp nor tqdm: a bulk run whose files all take the
    lane, and `--help`, never pay for them (about 0.2 s of start-up)."""
    code = (
        "import sys\nfrom streamer.cli.main import build_parser\nbuild_parser()\n"
        "print(sorted(m for m in ('aiohttp', 'tqdm') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout


@pytest.mark.parametrize(
    "argv",
    [("--version",), ("--help",), ("get", "--help"), ("put", "--help"), ("get", "--bogus")],
    ids=" ".join,
)
def test_parsing_alone_loads_no_event_loop_and_no_runner(tmp_path: Path, argv: list[str]) -> None:
    """--version, --help and a usage error end in the parser: no asyncio, no I/O library, no
    client, transport, storage or server module, no S3, date or fraction parsing."""
    loaded = _loaded_by(tmp_path, *argv)
    assert _among(loaded, PARSE_ONLY_LOADS_NONE_OF) == []
    assert "streamer.cli.get" in loaded  # the check saw the real parser


def test_a_download_and_an_upload_load_only_what_they_use(tmp_path: Path) -> None:
    """A plain `get` (bar off) loads no tqdm, aiofiles, bulk run, journal, manifest reader,
    server, S3 library, Dask or upload machinery; `put` and `put --tus` load no tqdm, bulk
    run, server or Dask.
    Over plain http `get`, `put` and `put --tus` go below aiohttp (raw body path, sendfile;
    tus's OPTIONS, creation and HEAD on the same raw connection), so none imports it."""
    from tests.helpers import ENV, ThreadedServer

    root = tmp_path / "root"
    root.mkdir()
    (root / "small.bin").write_bytes(b"x" * 4096)
    env = {**ENV, "XDG_STATE_HOME": str(tmp_path / "state")}
    with ThreadedServer(root) as served:
        base = served.rstrip("/")
        get = _loaded_by(tmp_path, "get", f"{base}/small.bin", "-o", str(tmp_path / "f"), "-q")
        assert (tmp_path / "f").read_bytes() == b"x" * 4096
        put = _loaded_by(tmp_path, "put", str(root / "small.bin"), f"{base}/up.bin", "-q")
        tus = _loaded_by(
            tmp_path, "put", "--tus", str(root / "small.bin"), f"{base}/files/", "-q", env=env
        )
    assert (root / "up.bin").read_bytes() == b"x" * 4096
    assert "streamer.transfer.download" in get  # it did download
    assert "streamer.transfer.tus" in tus  # it did a tus upload
    assert [n for n, m in (("get", get), ("put", put), ("tus", tus)) if "aiohttp" in m] == []
    assert _among(get, GET_LOADS_NONE_OF) == []
    assert _among(put, PUT_LOADS_NONE_OF) == []
    assert _among(tus, PUT_LOADS_NONE_OF) == []


# Runs the command line with an audit hook that appends the pid of every process opening the
# manifest (the workers are forked, so they inherit the hook; they leave with os._exit, so each
# open is written at once).
_OPENS = (
    "import os, sys\n"
    "manifest, log = sys.argv[1], sys.argv[2]\n"
    "def hook(event, args):\n"
    "    if event == 'open' and isinstance(args[0], (str, os.PathLike))\\\n"
    "            and os.fspath(args[0]) == manifest:\n"
    "        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)\n"
    "        os.write(fd, f'{os.getpid()}\\n'.encode())\n"
    "        os.close(fd)\n"
    "sys.addaudithook(hook)\n"
    "from streamer.cli.main import main\n"
    "raise SystemExit(main(sys.argv[3:]))\n"
)


def test_a_bulk_run_reads_its_manifest_once(tmp_path: Path) -> None:
    """A manifest short enough to keep (cli/bulk.py KEEP_PARSED) is read and parsed once, by
    the scan before the fork: its worker processes take their lines from the scan, so neither
    reads nor parses it again; every job still runs, each in one worker."""
    from tests.helpers import ENV, ThreadedServer

    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    names = [f"f{i}.bin" for i in range(6)]
    for i, name in enumerate(names):
        (root / name).write_bytes(bytes([i]) * 1000)
    manifest, log = tmp_path / "list.txt", tmp_path / "opens.log"
    with ThreadedServer(root) as served:
        base = served.rstrip("/")
        manifest.write_text("# six files\n" + "".join(f"{base}/{n}\n" for n in names))
        argv = ["get", "-i", str(manifest), "-d", str(out), "--processes", "2", "-q"]
        with subprocess.Popen(
            [sys.executable, "-c", _OPENS, str(manifest), str(log), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        ) as proc:
            _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-800:]
    assert [(out / n).read_bytes() for n in names] == [bytes([i]) * 1000 for i in range(6)]
    journal = (out / ".streamer-journal.jsonl").read_text().splitlines()
    assert len(journal) == len(names)  # each job ran once, in one of the two workers
    assert log.read_text().split() == [str(proc.pid)]  # by the parent alone, once


def test_a_bulk_run_of_small_files_loads_only_the_lane(tmp_path: Path) -> None:
    """`get -i` whose files all take the lane (bar off) loads neither aiohttp nor the full
    engine's download path nor the result types of single transfers (they load with the first
    job handed to the engine), nor a bar, server or upload machinery."""
    from tests.helpers import ThreadedServer

    root, out = tmp_path / "root", tmp_path / "out"
    root.mkdir()
    out.mkdir()
    (root / "small.bin").write_bytes(b"x" * 4096)
    manifest = tmp_path / "list.txt"
    with ThreadedServer(root) as served:
        manifest.write_text(served.rstrip("/") + "/small.bin\n")
        loaded = _loaded_by(tmp_path, "get", "-i", str(manifest), "-d", str(out), "-q")
    assert (out / "small.bin").read_bytes() == b"x" * 4096
    assert "streamer.lane.fetch" in loaded  # it did take the lane
    assert _among(loaded, BULK_LOADS_NONE_OF) == []
