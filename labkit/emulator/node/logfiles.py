"""Container logs with the time each line came, as a kubelet keeps them for ``kubectl logs``.

``kubectl logs --timestamps`` prefixes every line with the time it was written and ``--since`` keeps the recent
ones, so the node must know when each line came. A container's stdout and stderr therefore go into a pipe the
node reads (:class:`LogWriter`), not straight into the file: each chunk is appended to the log file as the
program wrote it (readers of the file see the same bytes as before), and the chunk's arrival time goes to an
index beside it (``<n>.times``: pairs of file offset and time, one per chunk, coalesced within a millisecond).
A line takes the time of the chunk it starts in. The pipe also gives the program the back-pressure a
container runtime gives: a program that writes faster than the node stores waits.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import os
import struct
import time
from pathlib import Path

_ENTRY = struct.Struct("<QQ")  # file offset, nanoseconds since the epoch
_COALESCE = 1_000_000  # ns


def index_path(log_path: Path) -> Path:
    """Where the times of ``log_path``'s chunks are kept."""
    return log_path.with_suffix(".times")


class LogWriter(asyncio.Protocol):
    """Reads a container's output pipe into its log file and the times index; :attr:`closed` when the pipe ends.

    Args:
        log_path: the log file of this instance of the container (appended to).
    """

    def __init__(self, log_path: Path):
        self._log = log_path.open("ab", buffering=0)
        self._index = index_path(log_path).open("ab", buffering=0)
        self._offset = self._log.tell()
        self._last = 0
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if now - self._last >= _COALESCE:
            self._index.write(_ENTRY.pack(self._offset, now))
            self._last = now
        self._log.write(data)
        self._offset += len(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._log.close()
        self._index.close()
        if not self.closed.done():
            self.closed.set_result(None)


async def open_pipe(log_path: Path) -> tuple[int, LogWriter]:
    """A pipe whose write end (returned, for the child; close it once the child has it) feeds ``log_path``."""
    read_end, write_end = os.pipe()
    try:
        writer = await read_into(read_end, log_path)
    except BaseException:
        os.close(write_end)
        raise
    return write_end, writer


async def read_into(fd: int, log_path: Path) -> LogWriter:
    """Feed ``log_path`` from ``fd`` (a pipe's read end, or a terminal's master end), which it then owns."""
    writer = LogWriter(log_path)
    try:
        await asyncio.get_running_loop().connect_read_pipe(lambda: writer, os.fdopen(fd, "rb", buffering=0))
    except BaseException:
        writer.connection_lost(None)
        raise
    return writer


def _times(log_path: Path) -> tuple[list[int], list[int]]:
    offsets: list[int] = []
    stamps: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        raw = index_path(log_path).read_bytes()
        for offset, stamp in _ENTRY.iter_unpack(raw[:len(raw) - len(raw) % _ENTRY.size]):
            offsets.append(offset)
            stamps.append(stamp)
    return offsets, stamps


def read(log_path: Path, start: int = 0, *, partial: bool = True) -> tuple[list[tuple[int, bytes]], int]:
    """The lines of ``log_path`` from byte ``start``, each with the time it came (ns), and the offset after them.

    Without an index (a file written otherwise) every line takes the file's time. ``partial``: include a last
    line the program has not finished yet; otherwise it is left for the next read.
    """
    try:
        data = log_path.read_bytes()[start:]
        fallback = log_path.stat().st_mtime_ns
    except FileNotFoundError:
        return [], start
    offsets, stamps = _times(log_path)
    entries: list[tuple[int, bytes]] = []
    position = start
    for line in data.splitlines(keepends=True):
        if not partial and not line.endswith(b"\n"):
            break
        found = bisect.bisect_right(offsets, position) - 1
        entries.append((stamps[found] if found >= 0 else fallback, line))
        position += len(line)
    return entries, position


def timestamp(nanoseconds: int) -> str:
    """RFC 3339 with nanoseconds, trailing zeros dropped, as Go's ``time.RFC3339Nano`` prints it."""
    whole, rest = divmod(nanoseconds, 1_000_000_000)
    fraction = f"{rest:09d}".rstrip("0")
    stamp = dt.datetime.fromtimestamp(whole, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction}Z" if fraction else f"{stamp}Z"


def render(entries: list[tuple[int, bytes]], *, timestamps: bool = False, since: float | None = None,
           tail: int | None = None) -> bytes:
    """What ``kubectl logs`` prints of ``entries``: lines at or after ``since`` (seconds since the epoch), the last
    ``tail``, maybe stamped."""
    if since is not None:
        entries = [entry for entry in entries if entry[0] >= since * 1e9]
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    if timestamps:
        return b"".join(timestamp(stamp).encode() + b" " + line for stamp, line in entries)
    return b"".join(line for _, line in entries)
