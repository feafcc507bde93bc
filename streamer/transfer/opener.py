"""What the transfers need from a client: the `Opener` protocol.

The transfers (download, segmented, upload, bulk) are typed against this small protocol, not
against `Client`, so `Client` is a facade over them (it imports them; they never import it) and
anything that can open a response can drive them.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol

from ..config import ClientConfig
from ..core.events import ProgressCallback
from ..core.ratelimit import Pacer

if TYPE_CHECKING:
    from ..http.bodies import Body
    from ..http.stream import Stream


class Opener(Protocol):
    """Opens responses (`stream`), sends bodies (`send`), and tells the lane what it may do."""

    @property
    def config(self) -> ClientConfig: ...

    def stream(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        accept_gzip: bool | None = None,
        raise_for_status: bool = False,
        progress: ProgressCallback | None = None,
    ) -> AbstractAsyncContextManager[Stream]:
        """Open `url`; the `Stream` is closed when the context ends."""
        ...

    def send(
        self,
        method: str,
        url: str,
        *,
        body: Body | None,
        headers: Mapping[str, str] | None = None,
        max_bytes: int | None = None,
        cross_origin: bool = False,
        on_sent: Any = None,
        progress: ProgressCallback | None = None,
        throttle: Pacer | None = None,
    ) -> AbstractAsyncContextManager[Stream]:
        """Send `body` (held to `throttle`'s rate when given) and open the answer."""
        ...

    def plain_route(self, url: str) -> bool:
        """Whether `url`'s origin is reached directly, with no proxy or netrc credentials."""
        ...

    def tls_context(self) -> ssl.SSLContext:
        """The one TLS context of this opener (the lane's and the engine's)."""
        ...


__all__ = ["Opener"]
