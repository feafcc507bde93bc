"""SigV4 for S3 through botocore's signer (the optional extra ``streamer[s3]``).

Only the signature comes from botocore; the requests are sent by streamer's own engine. A
streamed body is signed as ``UNSIGNED-PAYLOAD`` (the S3 SigV4 spec allows it for the payload
hash), so a part is never read twice; a small in-memory body (the completion XML) is signed
with its SHA-256.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType, SimpleNamespace
from typing import Any

from ..core.s3 import EXTRA, Credentials
from ..errors import UsageError

# SigV4 presigned URLs live at most 7 days (AWS SigV4 query-string authentication).
MAX_EXPIRES = 7 * 24 * 3600


def _botocore() -> tuple[ModuleType, ModuleType, ModuleType]:
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
    except ImportError:
        raise UsageError(
            f"s3:// needs botocore for request signing: pip install '{EXTRA}'"
        ) from None
    return botocore.auth, botocore.awsrequest, botocore.credentials


def require_signer() -> None:
    """Raise the usage error naming the extra now, before any work, when botocore is missing."""
    _botocore()


def _creds(creds: Credentials) -> Any:
    _auth, _req, credentials = _botocore()
    return credentials.Credentials(creds.access_key, creds.secret_key, creds.session_token)


def sign_headers(
    method: str,
    url: str,
    creds: Credentials,
    region: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers to send with the request: `headers` plus X-Amz-Date, X-Amz-Content-SHA256,
    Authorization (and X-Amz-Security-Token). ``body=None`` means a streamed, unsigned payload."""
    auth, awsrequest, _cred = _botocore()
    request = awsrequest.AWSRequest(
        method=method, url=url, data=body or b"", headers=dict(headers or {})
    )
    # botocore's S3 signer hashes the payload unless the client config says otherwise.
    request.context["client_config"] = SimpleNamespace(
        s3={"payload_signing_enabled": body is not None}
    )
    signer = auth.S3SigV4Auth(_creds(creds), "s3", region)
    signer.add_auth(request)
    return {str(k): str(v) for k, v in request.headers.items()}


def presign_url(method: str, url: str, creds: Credentials, region: str, expires: int) -> str:
    """A query-string signed URL for `method` on `url`, valid `expires` seconds."""
    auth, awsrequest, _cred = _botocore()
    expires = max(1, min(expires, MAX_EXPIRES))
    request = awsrequest.AWSRequest(method=method, url=url)
    auth.S3SigV4QueryAuth(_creds(creds), "s3", region, expires=expires).add_auth(request)
    return str(request.url)
