import os
import sys

from .cli.main import main


def _exit(code: int) -> None:
    """Leave without the interpreter's teardown of every module (about 10 ms after a bulk
    run, on the wall of every command) when nothing is left to finish: no thread but this
    one still running, and the standard streams flushed. Otherwise the usual exit.

    os._exit runs no atexit handler: streamer registers none, and closes its files itself."""
    threading = sys.modules.get("threading")
    alone = threading is None or all(
        t.daemon or t is threading.main_thread() for t in threading.enumerate()
    )
    if alone:
        try:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None:  # None when the descriptor was closed at start
                    stream.flush()
        except (OSError, ValueError):
            pass  # the usual exit reports it, as before
        else:
            os._exit(code)
    sys.exit(code)


_exit(main())
