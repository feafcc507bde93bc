"""The pure core: HTTP and file-format logic with no I/O at all.

Nothing here imports asyncio, aiohttp, aiofiles, tqdm, socket or touches files; a test walks the
imports to keep it so. Callers own the sockets, the files and the clock.
"""
