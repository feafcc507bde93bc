"""The built-in server: files with ranges and validators, uploads (PUT, POST forms, tus 1.0.0
at /files/), for tests and the demo."""

from .app import MAX_UPLOAD_KEY, make_app, running_server, serve
from .tus import TusConfig

__all__ = ["MAX_UPLOAD_KEY", "TusConfig", "make_app", "running_server", "serve"]
