"""The one exception tree of streamer, the `Result` codes and the CLI exit codes.

Every error raised by the public API is a `StreamerError`. Each carries the URL it concerns
(credentials redacted), a `Result` code, whether a retry may help, and where it is natural a
stdlib base so that ``except TimeoutError`` or ``except OSError`` keep working::

    StreamerError
    ├── UsageError (ValueError)             INVALID_INPUT: a bad URL, option or argument
    ├── NetworkError                        the peer could not be reached or went away
    │   ├── ResolveError                    CANT_RESOLVE
    │   ├── ConnectError                    CANT_CONNECT
    │   ├── TLSError                        TLS_HANDSHAKE_ERROR
    │   │   └── CertificateError            CERTIFICATE_ERROR
    │   ├── ConnectionLostError             CONNECTION_ERROR, NO_RESPONSE, REQUEST_FAILED
    │   └── TransferTimeout (TimeoutError)  TIMEOUT
    │       └── TooSlowError                TOO_SLOW: below the minimum speed for a window
    ├── ProtocolError                       INVALID_RESPONSE: a reply that cannot be parsed
    │   ├── BodyTruncatedError              PARTIAL_BODY, CHUNKED_BODY_SIZE_MISMATCH
    │   └── DecompressError                 BODY_DECOMPRESS_FAILED
    ├── HTTPStatusError                     HTTP_ERROR: the server answered with status >= 400
    │   └── S3Error                         HTTP_ERROR, UPLOAD_EXPIRED: with S3's error code
    ├── RedirectError
    │   ├── TooManyRedirects                REDIRECT_LIMIT_REACHED
    │   └── UnsafeRedirect                  UNSAFE_REDIRECT
    ├── BodyTooLarge                        BODY_SIZE_LIMIT_EXCEEDED
    ├── ChecksumMismatch                    CHECKSUM_MISMATCH
    ├── FileError (OSError)                 DOWNLOAD_FILE_CANT_OPEN, DOWNLOAD_FILE_WRITE_ERROR
    │   ├── FileExistsError_ (FileExistsError)  FILE_EXISTS: --no-clobber found a file
    │   └── TargetBusyError                 TARGET_BUSY: another process writes that target
    ├── SourceChangedError                  SOURCE_CHANGED: an upload's file changed mid-way
    └── Cancelled                           CANCELLED

Errors are picklable, so results can cross process boundaries.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar


class Result(enum.Enum):
    """Why a request ended. The first fourteen are Godot's HTTPRequest results, same names."""

    SUCCESS = "success"
    CHUNKED_BODY_SIZE_MISMATCH = "chunked_body_size_mismatch"
    CANT_CONNECT = "cant_connect"
    CANT_RESOLVE = "cant_resolve"
    CONNECTION_ERROR = "connection_error"
    TLS_HANDSHAKE_ERROR = "tls_handshake_error"
    NO_RESPONSE = "no_response"
    BODY_SIZE_LIMIT_EXCEEDED = "body_size_limit_exceeded"
    BODY_DECOMPRESS_FAILED = "body_decompress_failed"
    REQUEST_FAILED = "request_failed"
    DOWNLOAD_FILE_CANT_OPEN = "download_file_cant_open"
    DOWNLOAD_FILE_WRITE_ERROR = "download_file_write_error"
    REDIRECT_LIMIT_REACHED = "redirect_limit_reached"
    TIMEOUT = "timeout"
    # What a download engine needs beyond Godot's list.
    HTTP_ERROR = "http_error"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CERTIFICATE_ERROR = "certificate_error"
    UNSAFE_REDIRECT = "unsafe_redirect"
    TOO_SLOW = "too_slow"
    CANCELLED = "cancelled"
    PARTIAL_BODY = "partial_body"
    INVALID_RESPONSE = "invalid_response"
    INVALID_INPUT = "invalid_input"
    FILE_EXISTS = "file_exists"
    TARGET_BUSY = "target_busy"
    SOURCE_READ_ERROR = "source_read_error"
    SOURCE_CHANGED = "source_changed"
    # Resumable uploads (tus 1.0, S3 multipart).
    NOT_RESUMABLE = "not_resumable"
    UPLOAD_EXPIRED = "upload_expired"


# curl's exit codes where curl has one (see `man curl`, EXIT CODES); the others are ours and
# listed in README.md. 2 is a usage error, 130 an interrupt (128 + SIGINT).
EXIT_CODES: dict[Result, int] = {
    Result.SUCCESS: 0,
    Result.INVALID_INPUT: 2,
    Result.CANT_RESOLVE: 6,
    Result.CANT_CONNECT: 7,
    Result.INVALID_RESPONSE: 8,
    Result.PARTIAL_BODY: 18,
    Result.CHUNKED_BODY_SIZE_MISMATCH: 18,
    Result.HTTP_ERROR: 22,
    Result.DOWNLOAD_FILE_CANT_OPEN: 23,
    Result.DOWNLOAD_FILE_WRITE_ERROR: 23,
    Result.TIMEOUT: 28,
    Result.TOO_SLOW: 28,
    Result.TLS_HANDSHAKE_ERROR: 35,
    Result.REDIRECT_LIMIT_REACHED: 47,
    Result.NO_RESPONSE: 52,
    Result.REQUEST_FAILED: 55,
    Result.CONNECTION_ERROR: 56,
    Result.CERTIFICATE_ERROR: 60,
    Result.BODY_DECOMPRESS_FAILED: 61,
    Result.BODY_SIZE_LIMIT_EXCEEDED: 63,
    Result.FILE_EXISTS: 73,
    Result.CHECKSUM_MISMATCH: 80,
    Result.UNSAFE_REDIRECT: 81,
    Result.TARGET_BUSY: 82,
    Result.SOURCE_READ_ERROR: 26,
    Result.SOURCE_CHANGED: 83,
    Result.NOT_RESUMABLE: 84,
    Result.UPLOAD_EXPIRED: 85,
    Result.CANCELLED: 130,
}


def exit_code(result: Result) -> int:
    """The process exit code for a result (1 for anything without a code of its own)."""
    return EXIT_CODES.get(result, 1)


def _rebuild(cls: type[StreamerError], state: dict[str, Any]) -> StreamerError:
    err = cls.__new__(cls)
    os_errno = state.pop("__errno__", None)
    err.__dict__.update(state)
    Exception.__init__(err, state.get("message", ""))
    if isinstance(err, OSError):
        err.errno = os_errno  # lives on the OSError object, not in __dict__
    return err


class StreamerError(Exception):
    """Base of every error streamer raises. ``str(err)`` is one line naming the URL and reason."""

    default_result = Result.REQUEST_FAILED
    default_retryable = False

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        result: Result | None = None,
        retryable: bool | None = None,
        path: str | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.result = result if result is not None else self.default_result
        self.retryable = self.default_retryable if retryable is None else retryable
        self.path = path
        self.attempts = attempts  # how many attempts were made (retries count here)

    def __str__(self) -> str:
        where = self.url or (self.path or "")
        return f"{where}: {self.message}" if where else self.message

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        if isinstance(self, OSError):
            state["__errno__"] = self.errno
        return (_rebuild, (type(self), state))

    @property
    def exit_code(self) -> int:
        return exit_code(self.result)


E = TypeVar("E", bound=StreamerError)


def evolve(err: E, **changes: Any) -> E:
    """A new error like `err` with some attributes changed (``url``, ``message``, ``attempts``,
    ``result``...): errors are complete when constructed, never edited afterwards."""
    unknown = set(changes) - set(err.__dict__)
    if unknown:
        raise TypeError(f"{type(err).__name__} has no {', '.join(sorted(unknown))}")
    state = dict(err.__dict__, **changes)
    if isinstance(err, OSError):
        state["__errno__"] = err.errno
    new = _rebuild(type(err), state)
    assert isinstance(new, type(err))
    return new


class UsageError(StreamerError, ValueError):
    """The caller asked for something that cannot work: bad URL, option or argument."""

    default_result = Result.INVALID_INPUT


class NetworkError(StreamerError):
    """The peer could not be reached, or the connection broke; usually worth a retry."""

    default_result = Result.CONNECTION_ERROR
    default_retryable = True


class ResolveError(NetworkError):
    default_result = Result.CANT_RESOLVE


class ConnectError(NetworkError):
    default_result = Result.CANT_CONNECT


class TLSError(NetworkError):
    default_result = Result.TLS_HANDSHAKE_ERROR
    default_retryable = False


class CertificateError(TLSError):
    default_result = Result.CERTIFICATE_ERROR


class ConnectionLostError(NetworkError):
    default_result = Result.CONNECTION_ERROR


class TransferTimeout(NetworkError, TimeoutError):
    default_result = Result.TIMEOUT


class TooSlowError(TransferTimeout):
    default_result = Result.TOO_SLOW


class ProtocolError(StreamerError):
    """The reply broke HTTP framing or could not be parsed (not a real status from the server)."""

    default_result = Result.INVALID_RESPONSE


class BodyTruncatedError(ProtocolError):
    """The body ended before its declared length or before its last chunk."""

    default_result = Result.PARTIAL_BODY
    default_retryable = True

    def __init__(self, message: str, *, received: int, expected: int | None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.received = received
        self.expected = expected

    @classmethod
    def cut_short(
        cls, url: str, received: int, expected: int | None, *, chunked: bool = False
    ) -> BodyTruncatedError:
        """The one wording for a body that ended early, whichever path read it (RFC 9112 6.3,
        7.1): before its last chunk, before its declared length, or (no framing) at all."""
        if chunked:
            message = f"chunked body cut short after {received} bytes (no last chunk)"
            return cls(
                message,
                url=url,
                received=received,
                expected=None,
                result=Result.CHUNKED_BODY_SIZE_MISMATCH,
            )
        if expected is not None:
            message = f"body cut short: {received} of {expected} bytes"
        else:
            message = f"body cut short after {received} bytes"
        return cls(message, url=url, received=received, expected=expected)


class DecompressError(ProtocolError):
    default_result = Result.BODY_DECOMPRESS_FAILED


# Statuses worth retrying: RFC 9110 15.5.9 (408), RFC 6585 4 (429), and transient 5xx.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class HTTPStatusError(StreamerError):
    """The server answered with a status >= 400. Nothing was written to the target."""

    default_result = Result.HTTP_ERROR

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str = "",
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        kw.setdefault("retryable", status in RETRYABLE_STATUSES)
        super().__init__(message, **kw)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after  # seconds the server asked us to wait


class S3Error(HTTPStatusError):
    """An S3 error answer; ``code`` is S3's error code (SignatureDoesNotMatch, NoSuchUpload...)."""

    def __init__(self, message: str, *, status: int, code: str = "", **kw: Any) -> None:
        super().__init__(message, status=status, **kw)
        self.code = code


class RedirectError(StreamerError):
    default_result = Result.UNSAFE_REDIRECT


class TooManyRedirects(RedirectError):
    default_result = Result.REDIRECT_LIMIT_REACHED


class UnsafeRedirect(RedirectError):
    default_result = Result.UNSAFE_REDIRECT


class BodyTooLarge(StreamerError):
    """The body is (or declared itself) larger than the limit; stopped before the excess."""

    default_result = Result.BODY_SIZE_LIMIT_EXCEEDED

    def __init__(self, message: str, *, limit: int, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.limit = limit


class ChecksumMismatch(StreamerError):
    default_result = Result.CHECKSUM_MISMATCH

    def __init__(self, message: str, *, expected: str, actual: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.expected = expected
        self.actual = actual


class FileError(StreamerError, OSError):
    """A local file could not be opened, written or renamed. Names the path."""

    default_result = Result.DOWNLOAD_FILE_WRITE_ERROR

    def __str__(self) -> str:
        return StreamerError.__str__(self)


class FileExistsError_(FileError, FileExistsError):
    default_result = Result.FILE_EXISTS


class TargetBusyError(FileError):
    """Another process is downloading to the same target right now."""

    default_result = Result.TARGET_BUSY


class SourceChangedError(StreamerError):
    """An upload's source shrank, grew or was replaced while it was being sent."""

    default_result = Result.SOURCE_CHANGED

    @classmethod
    def during_upload(cls, path: str, why: str) -> SourceChangedError:
        """The one wording, whichever path sent the file (aiohttp's or sendfile's)."""
        return cls(
            f"{path} changed during the upload ({why}); the request was cut short so the "
            "server cannot keep a corrupt copy",
            path=path,
        )


class Cancelled(StreamerError):
    default_result = Result.CANCELLED


__all__ = [
    "EXIT_CODES",
    "RETRYABLE_STATUSES",
    "BodyTooLarge",
    "BodyTruncatedError",
    "Cancelled",
    "CertificateError",
    "ChecksumMismatch",
    "ConnectError",
    "ConnectionLostError",
    "DecompressError",
    "FileError",
    "FileExistsError_",
    "HTTPStatusError",
    "NetworkError",
    "ProtocolError",
    "RedirectError",
    "ResolveError",
    "Result",
    "S3Error",
    "SourceChangedError",
    "StreamerError",
    "TLSError",
    "TargetBusyError",
    "TooManyRedirects",
    "TooSlowError",
    "TransferTimeout",
    "UnsafeRedirect",
    "UsageError",
    "evolve",
    "exit_code",
]
