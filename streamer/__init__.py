"""streamer: a streaming download and upload engine on asyncio.

Memory stays flat whatever the body size, limits hold before damage, and every way a transfer
can fail is a typed `StreamerError` with a `Result` code.
"""

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

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
    S3Error,
    SourceChangedError,
    StreamerError,
    TargetBusyError,
    TLSError,
    TooManyRedirects,
    TooSlowError,
    TransferTimeout,
    UnsafeRedirect,
    UsageError,
)

if TYPE_CHECKING:
    from .client import Client
    from .config import ClientConfig
    from .core.checksum import Checksum
    from .core.events import Phase, Progress, ProgressCallback
    from .core.manifest import Job
    from .core.retry import RetryPolicy
    from .http.bodies import FilePart, TextPart
    from .http.stream import Stream
    from .results import DownloadResult, FetchResult, S3UploadResult, TusResult, UploadResult
    from .sync import download, fetch, upload, upload_resumable
    from .transfer.bulk import BulkOptions, JobResult
    from .transfer.handover import BulkRun

# The I/O layers (aiohttp, aiofiles, tqdm) load on first use, so that importing the pure core
# (`streamer.core.*`) or the error tree stays free of them; a test holds this.
_LAZY = {
    "BulkOptions": "transfer.bulk",
    "BulkRun": "transfer.handover",
    "Checksum": "core.checksum",
    "Client": "client",
    "ClientConfig": "config",
    "DownloadResult": "results",
    "FetchResult": "results",
    "FilePart": "http.bodies",
    "Job": "core.manifest",
    "JobResult": "transfer.bulk",
    "Phase": "core.events",
    "Progress": "core.events",
    "ProgressCallback": "core.events",
    "RetryPolicy": "core.retry",
    "S3UploadResult": "results",
    "Stream": "http.stream",
    "TextPart": "http.bodies",
    "TusResult": "results",
    "UploadResult": "results",
    "download": "sync",
    "fetch": "sync",
    "upload": "sync",
    "upload_resumable": "sync",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'streamer' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BodyTooLarge",
    "BodyTruncatedError",
    "BulkOptions",
    "BulkRun",
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
    "FilePart",
    "HTTPStatusError",
    "Job",
    "JobResult",
    "NetworkError",
    "Phase",
    "Progress",
    "ProgressCallback",
    "ProtocolError",
    "RedirectError",
    "ResolveError",
    "Result",
    "RetryPolicy",
    "S3Error",
    "S3UploadResult",
    "SourceChangedError",
    "Stream",
    "StreamerError",
    "TLSError",
    "TargetBusyError",
    "TextPart",
    "TooManyRedirects",
    "TooSlowError",
    "TransferTimeout",
    "TusResult",
    "UnsafeRedirect",
    "UploadResult",
    "UsageError",
    "__version__",
    "download",
    "fetch",
    "upload",
    "upload_resumable",
]
