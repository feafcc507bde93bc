"""The built-in server: files with ranges and validators, uploads, for tests and the demo."""

from .app import MAX_UPLOAD_KEY, make_app, running_server, serve

__all__ = ["MAX_UPLOAD_KEY", "make_app", "running_server", "serve"]
