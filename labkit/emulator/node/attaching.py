"""One ``kubectl attach`` to a running container: its output from now on, and its stdin and terminal if it has them.

A container's stdin belongs to the container, not to an attach: it is made when the container starts (``stdin:
true``) and outlives attaches, unless the pod says ``stdinOnce`` (as ``kubectl run -i`` does), when the first
attach that closes it (or leaves) closes it for good and the program reads an end of file. On a terminal
(``tty: true``) closing means Ctrl-D, and the client's window size is set on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from labkit.emulator.node import terminals
from labkit.emulator.node.pods import ContainerRecord


class Attachment:
    """An attach session to ``record``'s running instance.

    Args:
        record: the container.
        output: what the instance writes, until it ends.
        once: the container's ``stdinOnce``.
    """

    def __init__(self, record: ContainerRecord, output: AsyncIterator[bytes], *, once: bool):
        self._record = record
        self._stdin = record.stdin
        self.output = output
        self.once = once
        self.tty = record.terminal is not None
        self._took_stdin = False

    async def write(self, data: bytes) -> None:
        """Bytes the client typed, for the container's stdin (dropped when it has none, or closed it)."""
        if self._stdin is None or self._stdin.is_closing() or self._record.stdin is not self._stdin:
            return
        self._took_stdin = True
        self._record.stdin_claimed = self._record.stdin_claimed or self.once
        self._stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await self._stdin.drain()

    def resize(self, width: int, height: int) -> None:
        """The client's window size, for a container on a terminal."""
        if self._record.terminal is not None and width > 0 and height > 0:
            terminals.resize(self._record.terminal, width, height)

    def close_stdin(self) -> None:
        """The client closed its stdin: with ``stdinOnce`` the container's stdin ends too; otherwise it stays."""
        self._took_stdin = True
        self._record.stdin_claimed = self._record.stdin_claimed or self.once
        if not self.once or self._stdin is None or self._stdin.is_closing() or self._record.stdin is not self._stdin:
            return
        if self.tty:
            with contextlib.suppress(OSError, RuntimeError):
                self._stdin.write(terminals.EOF_CHARACTER)
        else:
            self._stdin.close()

    def leave(self) -> None:
        """The client went away: a ``stdinOnce`` stdin it had is closed, as when it closes it."""
        if self._took_stdin:
            self.close_stdin()
