"""Whether the environment can route a request at all (proxy variables, a netrc file).

Standard library only: a bulk run whose files all take the lane asks this once and, when the
answer is no, never loads the aiohttp stack that looks routes up per origin (http/routes.py).
"""

from __future__ import annotations

import os


def plain_environment() -> bool:
    """True when the environment can add nothing to a request: no proxy variable is set
    (urllib's rule: any ``*_proxy`` variable, in any case) and no netrc file can be found.
    Then no per-origin lookup is needed (and aiohttp, which does it, need not be loaded)."""
    for name, value in os.environ.items():
        if value and name.lower().endswith("_proxy") and name.lower() != "no_proxy":
            return False
    if os.environ.get("NETRC"):
        return False
    return not any(
        os.path.exists(os.path.join(os.path.expanduser("~"), name)) for name in (".netrc", "_netrc")
    )


__all__ = ["plain_environment"]
