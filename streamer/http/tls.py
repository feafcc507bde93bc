"""TLS settings as a value, and the SSLContext built from them (standard library only).

The options themselves (`TLSOptions`) are part of the client's configuration (`config.py`).
Kept apart from `net.py` so that the small-file lane can use the context without importing
aiohttp (about 0.15 s of every command's start-up).
"""

from __future__ import annotations

import functools
import ssl

from ..config import TLSOptions
from ..errors import UsageError


@functools.lru_cache(maxsize=8)
def make_ssl_context(tls: TLSOptions) -> ssl.SSLContext:
    """The SSLContext for `tls` (the one place streamer decides TLS); a bad CA or certificate
    file is a UsageError naming it. Cached per options: loading the system CAs costs ~15 ms,
    and a context is safe to share between connections and clients."""
    try:
        ctx = ssl.create_default_context(cafile=tls.cafile)
        if tls.certfile:
            ctx.load_cert_chain(tls.certfile, tls.keyfile)
    except (OSError, ssl.SSLError) as exc:
        bad = tls.cafile if tls.cafile and not tls.certfile else (tls.certfile or tls.cafile)
        raise UsageError(f"cannot load TLS file {bad}: {exc}", path=bad) from exc
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


__all__ = ["TLSOptions", "make_ssl_context"]
