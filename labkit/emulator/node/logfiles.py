"""Container logs with the time each line came, as a kubelet keeps them for ``kubectl logs``.

``kubectl logs --timestamps`` prefixes every line with the time it was written and ``--since`` keeps the recent
ones, so the node must know when each line came. A kubelet learns it from the container runtime, which reads
every write; doing that here would put every line of every Envoy access log through the emulator's event loop,
on the path whose speed the labs measure. So programs keep writing straight into their log file, and a
:class:`Stamper` notes, a few times a second, how far each running container's file has grown: an index beside
it (``<n>.times``, pairs of *end offset, time*) says that the bytes up to that offset had come by then. A line
takes the time of the first note that covers its start: never earlier than it was written, at most one
sampling period later (:data:`SAMPLE`), which ``--since`` and the order of lines never notice. Lines no note
covers yet take the file's modification time.

A container on a terminal (``tty: true``) is the exception: its output comes from the terminal's master end,
which the node must read anyway (:class:`LogWriter`), so each chunk is noted as it comes.
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

_ENTRY = struct.Struct("<QQ")  # the log file's size, nanoseconds since the epoch when it had been reached
SAMPLE = 0.1  # seconds between notes of the running containers' log sizes


def index_path(log_path: Path) -> Path:
    """Where the times of ``log_path``'s bytes are kept."""
    return log_path.with_suffix(".times")


def _note(log_path: Path, size: int, nanoseconds: int) -> None:
    with index_path(log_path).open("ab") as index:
        index.write(_ENTRY.pack(size, nanoseconds))


class Stamper:
    """Notes how far the log files it watches have grown, every ``period`` seconds while any is watched.

    Args:
        period: seconds between notes.
    """

    def __init__(self, period: float = SAMPLE):
        self.period = period
        self._sizes: dict[Path, int] = {}
        self._task: asyncio.Task[None] | None = None

    def watch(self, log_path: Path) -> None:
        """Start noting ``log_path`` (a container instance's file, just opened): what it already holds, now."""
        self._sizes[log_path] = 0
        self.sample(log_path)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="log stamper")

    def unwatch(self, log_path: Path) -> None:
        """The instance ended: one last note, then no more."""
        self.sample(log_path)
        self._sizes.pop(log_path, None)

    def sample(self, log_path: Path | None = None) -> None:
        """Note the files (or just ``log_path``) that grew since their last note."""
        now = time.time_ns()
        for path in [log_path] if log_path is not None else list(self._sizes):
            if path not in self._sizes:
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                self._sizes.pop(path, None)  # the pod's folder went with the pod
                continue
            if size > self._sizes[path]:
                with contextlib.suppress(FileNotFoundError):
                    _note(path, size, now)
                self._sizes[path] = size

    async def _run(self) -> None:
        while self._sizes:
            await asyncio.sleep(self.period)
            self.sample()

    def close(self) -> None:
        """Stop noting."""
        if self._task is not None:
            self._task.cancel()
        self._sizes.clear()


class LogWriter(asyncio.Protocol):
    """Reads a terminal's output into its log file, noting each chunk's time; :attr:`closed` when it ends.

    Args:
        log_path: the log file of this instance of the container (appended to).
    """

    def __init__(self, log_path: Path):
        self._log = log_path.open("ab", buffering=0)
        self._index = index_path(log_path).open("ab", buffering=0)
        self._size = self._log.tell()
        self.closed = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._log.write(data)
        self._size += len(data)
        self._index.write(_ENTRY.pack(self._size, time.time_ns()))

    def connection_lost(self, exc: Exception | None) -> None:
        self._log.close()
        self._index.close()
        if not self.closed.done():
            self.closed.set_result(None)


async def read_into(fd: int, log_path: Path) -> LogWriter:
    """Feed ``log_path`` from ``fd`` (a terminal's master end, or a pipe's read end), which it then owns."""
    writer = LogWriter(log_path)
    try:
        await asyncio.get_running_loop().connect_read_pipe(lambda: writer, os.fdopen(fd, "rb", buffering=0))
    except BaseException:
        writer.connection_lost(None)
        raise
    return writer


def _times(log_path: Path) -> tuple[list[int], list[int]]:
    ends: list[int] = []
    stamps: list[int] = []
    with contextlib.suppress(FileNotFoundError):
        raw = index_path(log_path).read_bytes()
        for end, stamp in _ENTRY.iter_unpack(raw[:len(raw) - len(raw) % _ENTRY.size]):
            ends.append(end)
            stamps.append(stamp)
    return ends, stamps


def read(log_path: Path, start: int = 0, *, partial: bool = True) -> tuple[list[tuple[int, bytes]], int]:
    """The lines of ``log_path`` from byte ``start``, each with the time it came (ns), and the offset after them.

    A line takes the time of the first note covering its start, or the file's time when none does yet.
    ``partial``: include a last line the program has not finished yet; otherwise it is left for the next read.
    """
    try:
        data = log_path.read_bytes()[start:]
        fallback = log_path.stat().st_mtime_ns
    except FileNotFoundError:
        return [], start
    ends, stamps = _times(log_path)
    entries: list[tuple[int, bytes]] = []
    position = start
    for line in data.splitlines(keepends=True):
        if not partial and not line.endswith(b"\n"):
            break
        found = bisect.bisect_right(ends, position)
        entries.append((stamps[found] if found < len(ends) else fallback, line))
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
