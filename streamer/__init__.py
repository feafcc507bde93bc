"""streamer: a streaming download and upload engine on asyncio.

Memory stays flat whatever the body size, limits hold before damage, and every way a transfer
can fail is a typed `StreamerError` with a `Result` code.
"""

__version__ = "0.1.0"

from .client import Client
from .config import ClientConfig
from .core.checksum import Checksum
from .core.events import Phase, Progress, ProgressCallback
from .errors import (
    BodyTooLarge,
    BodyTruncatedError,
    Cancelled,
    CertificateError,
    ChecksumMismatch,
    ConnectError,
    ConnectionLostError,
    DecompressError,
    FileError,
    FileExistsError_,
    HTTPStatusError,
    NetworkError,
    ProtocolError,
    RedirectError,
    ResolveError,
    Result,
    StreamerError,
    TLSError,
    TooManyRedirects,
    TooSlowError,
    TransferTimeout,
    UnsafeRedirect,
    UsageError,
)
from .results import DownloadResult, FetchResult
from .stream import Stream
from .sync import download, fetch

__all__ = [
    "BodyTooLarge",
    "BodyTruncatedError",
    "Cancelled",
    "CertificateError",
    "Checksum",
    "ChecksumMismatch",
    "Client",
    "ClientConfig",
    "ConnectError",
    "ConnectionLostError",
    "DecompressError",
    "DownloadResult",
    "FetchResult",
    "FileError",
    "FileExistsError_",
    "HTTPStatusError",
    "NetworkError",
    "Phase",
    "Progress",
    "ProgressCallback",
    "ProtocolError",
    "RedirectError",
    "ResolveError",
    "Result",
    "Stream",
    "StreamerError",
    "TLSError",
    "TooManyRedirects",
    "TooSlowError",
    "TransferTimeout",
    "UnsafeRedirect",
    "UsageError",
    "__version__",
    "download",
    "fetch",
]
