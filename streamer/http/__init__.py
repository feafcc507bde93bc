"""The aiohttp transport: session, requests, `Stream`, bodies, TLS, error translation."""
