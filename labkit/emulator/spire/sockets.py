"""Unix socket names that fit: a socket's path is limited to 107 bytes, and pod folders sit deep in a lab's home.

A longer path is reached through an open descriptor of its directory (``/proc/self/fd/<n>/<name>``), which Linux
resolves like the path itself, for binding and connecting alike.
"""

from __future__ import annotations

import os
from pathlib import Path

LIMIT = 100  # bytes, with room to spare under sun_path's 108


def unix_address(path: Path) -> tuple[str, int | None]:
    """A name to bind or connect ``path`` by, and the directory descriptor to close afterwards (or None).

    Args:
        path: the socket file (its directory must exist when the path is long).
    """
    text = str(path)
    if len(text.encode()) < LIMIT:
        return text, None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd
