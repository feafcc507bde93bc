"""streamer: a streaming download and upload engine on asyncio."""

__version__ = "0.1.0"
