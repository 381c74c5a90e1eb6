"""What SPIRE's three programs (server, agent, registrar) share as processes: their flags, logs and stop.

Each binary reads ``-config <path>`` (a default path otherwise), logs ``time=… level=… msg=…`` lines to stderr, stops
on SIGTERM or SIGINT, and exits 1 after printing ``Error: <reason>`` when its configuration cannot be used.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence

from labkit.errors import SpireError

LOG_FORMAT = "time=%(asctime)s level=%(levelname)s msg=%(message)s"


def config_flag(args: Sequence[str], default: str) -> str:
    """The value of ``-config`` in ``args``, else ``default``."""
    if "-config" in args and list(args).index("-config") + 1 < len(args):
        return args[list(args).index("-config") + 1]
    return default


def stop_event() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (call it inside the running loop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def run_program(args: Sequence[str], default_config: str, run: Callable[[str], Awaitable[None]], *,
                log_format: str = LOG_FORMAT) -> int:
    """Run one SPIRE program to its end: its exit code.

    Args:
        args: its command-line flags (``run`` already taken off).
        default_config: where its configuration is when ``-config`` is not given.
        run: the program, given the configuration's path.
        log_format: its log lines' layout.
    """
    logging.basicConfig(level=logging.INFO, format=log_format, stream=sys.stderr)
    try:
        asyncio.run(run(config_flag(args, default_config)))
    except SpireError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    return 0
