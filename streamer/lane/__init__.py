"""The small-file lane: raw keep-alive HTTP/1.1 GETs for bulk runs, below aiohttp."""
