"""Terminals for ``kubectl exec -it`` and containers with ``tty: true``: a pseudo-terminal per session.

``exec -it … -- sh`` expects an interactive shell: a prompt, line editing, ``Ctrl-C`` reaching the command,
``tty`` naming a device. Only a real pseudo-terminal gives that, so the command gets the slave end as its
stdin, stdout and stderr and as its controlling terminal (a session of its own, ``TIOCSCTTY``), and the node
talks to the master end: what the client types goes in, what the terminal shows comes out on one stream
(a terminal has no separate stderr), and the client's window size (the resize channel) is set on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import struct
import termios
from typing import Any

EOF_CHARACTER = b"\x04"  # what closing stdin means to a terminal: Ctrl-D at the start of a line


def open_pty(width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """A new pseudo-terminal as ``(master, slave)``, sized when the client said how big its window is."""
    master, slave = os.openpty()
    if width and height:
        resize(master, width, height)
    return master, slave


def resize(master: int, width: int, height: int) -> None:
    """Set the terminal's window size; the program gets SIGWINCH, as under a real terminal."""
    with contextlib.suppress(OSError):
        fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


def take_controlling_terminal() -> None:
    """In the child, after ``setsid``: make its stdin (the slave) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class TerminalProcess:
    """A command on a terminal, shaped like :class:`asyncio.subprocess.Process` for the exec stream.

    ``stdin`` and ``stdout`` are the master end; ``stderr`` is ``None`` (the terminal shows both).
    """

    def __init__(self, process: Any, master: int, stdin: asyncio.StreamWriter, stdout: asyncio.StreamReader):
        self._process = process
        self.master = master
        self.stdin = stdin
        self.stdout = stdout
        self.stderr: asyncio.StreamReader | None = None

    @property
    def pid(self) -> int:
        return int(self._process.pid)

    @property
    def returncode(self) -> int | None:
        return self._process.returncode  # type: ignore[no-any-return]

    async def wait(self) -> int:
        return await self._process.wait()  # type: ignore[no-any-return]

    def kill(self) -> None:
        self._process.kill()

    def resize(self, width: int, height: int) -> None:
        resize(self.master, width, height)

    def close(self) -> None:
        """Let go of the terminal (the master end's writer; its reader closed when the program ended)."""
        self.stdin.close()

    def close_stdin(self) -> None:
        """A terminal's stdin does not close; it reads an end of file when Ctrl-D comes."""
        with contextlib.suppress(OSError, RuntimeError):
            self.stdin.write(EOF_CHARACTER)


class _MasterReader(asyncio.StreamReaderProtocol):
    """Reads a master end: once every holder of the slave end has closed it, reads fail with EIO — its end of file."""

    def connection_lost(self, exc: Exception | None) -> None:
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            exc = None
        super().connection_lost(exc)


async def master_streams(master: int) -> tuple[asyncio.StreamWriter, asyncio.StreamReader]:
    """Asyncio streams on both directions of a terminal's master end (the reader ends when the program does)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: _MasterReader(reader), os.fdopen(master, "rb", buffering=0))
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                        os.fdopen(os.dup(master), "wb", buffering=0))
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return writer, reader
