"""A fork server ("zygote") per node: labkit programs start as forks of a warm interpreter.

Istio's images are labkit programs run as ``python -s -m <module> …`` (the proxy agent, istiod). Each used to pay
an interpreter start and ~0.3–1 s of imports (gRPC, protobuf, the xDS protos, cryptography, aiohttp) and kept its
own copy of those modules: ~24 MB private memory per proxy agent, for a dozen agents per lab. The zygote imports
them once, freezes the garbage collector's view of them (``gc.freeze``: the collector then never writes to those
pages, so forks share them), and forks a child per container: the child starts in milliseconds and shares the
imported code and data with its siblings until it writes to them.

The node starts its zygote lazily (:class:`Zygote`), talks to it over a ``SOCK_SEQPACKET`` socket pair (one
message per request or report, nobody else can connect, nothing to clean up on disk) and sends each request with
the container's stdin, stdout and stderr as file descriptors (``SCM_RIGHTS``). The zygote forks; the child becomes
what a fresh ``python -s -m <module>`` would have been (its own process group, stdio, working directory, whole
environment, ``sys.path``, signal dispositions, ``sys.argv``, process title) and runs the module as ``__main__``.
The zygote is every child's parent: it reaps them and reports each exit status, so the node sees a
:class:`ForkedProcess` that behaves as the ``asyncio.subprocess.Process`` it used to get (pid, ``wait()``,
``returncode``, negative for a signal).

Ownership (DESIGN decision 3) holds through two links: the zygote dies with the emulator (``PR_SET_PDEATHSIG``, as
any pod process, :mod:`.spawning`), and each child dies with the zygote (``PR_SET_PDEATHSIG`` set in the child;
the zygote has a single thread, the one that forks, so the signal's owner lives as long as the zygote). A
SIGKILLed emulator therefore leaves nothing behind.

A request may carry the pod's sandbox (:mod:`.sandboxing`): the child enters it right after the fork, which is
possible because the zygote has a single thread (a user namespace can only be entered by one).

What a fork cannot give: ``/proc/<pid>/environ`` shows the zygote's start-up environment, not the child's (Linux
reads it from memory set at exec). Programs run as scripts (the small servers, ``-S``) and host commands keep
being started afresh, and ``LABKIT_ZYGOTE=0`` turns the zygote off altogether.

Run as ``python -s -m labkit.emulator.node.zygote <socket fd> <module>…`` (the modules to import first). It must
start no thread before it forks (a fork copies only the forking thread, and a lock another thread held stays held):
it only imports, and serves with ``poll``, not asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import io
import json
import logging
import os
import select
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import setproctitle

from labkit.emulator.node import sandboxing
from labkit.emulator.node.images import SOURCE_ROOT

logger = logging.getLogger(__name__)

ENABLE_VARIABLE = "LABKIT_ZYGOTE"
MODULE_PREFIX = "labkit."
ZYGOTE_MODULE = "labkit.emulator.node.zygote"
MAX_MESSAGE = 1 << 20  # a request is argv + a container's whole environment: a few KiB
CLOSE_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1

# What the labkit programs import, measured with ``python -X importtime -m <module>``: the programs themselves
# (the proxy agent, istiod) and what the agent imports only when it runs (gRPC, protobuf and the xDS protos of its
# workload side). Named here, not imported: the node imports no program code, only its zygote does.
PRELOAD = (
    "asyncio",
    "labkit.emulator.envoy.agent",
    "labkit.emulator.envoy.workload",
    "labkit.emulator.envoy.nds",
    "labkit.emulator.mesh.istiod",
)


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether labkit programs start as forks of a zygote: yes on Linux unless ``LABKIT_ZYGOTE=0``.

    Args:
        environ: the environment to read; this process's by default.
    """
    if sys.platform != "linux":  # SOCK_SEQPACKET, pipe2 and the death signal are Linux's
        return False
    return (os.environ if environ is None else environ).get(ENABLE_VARIABLE, "1").strip() not in {"0", "false", "no"}


def module_of(argv: Sequence[str], python: str) -> str | None:
    """The module of a ``<python> -s -m <module> args…`` command line; ``None`` for any other command line.

    Args:
        argv: a command line.
        python: the interpreter the zygote runs (the node's).
    """
    return argv[3] if len(argv) >= 4 and argv[0] == python and list(argv[1:3]) == ["-s", "-m"] else None


def forkable(argv: Sequence[str], python: str) -> bool:
    """Whether ``argv`` is a labkit program run with ``-m`` (the proxy agent, istiod), which the zygote starts.

    Args:
        argv: the command line a container would start.
        python: the interpreter the zygote runs (the node's).
    """
    return (module_of(argv, python) or "").startswith(MODULE_PREFIX)


class ZygoteUnavailable(Exception):
    """The zygote could not take the request (it did not start, or died): start the program afresh."""


class ForkedProcess:
    """A child of the zygote, seen as the node sees an ``asyncio.subprocess.Process``.

    It has no pipes: its stdio are the file descriptors given at spawn. Signals go straight to the pid (the
    zygote, its parent, reaps it and reports the status before the pid can be reused).
    """

    def __init__(self, pid: int, argv: Sequence[str]):
        self.pid = pid
        self.args = list(argv)
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None
        self._exited: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def __repr__(self) -> str:
        return f"<ForkedProcess {self.pid} returncode={self.returncode} {self.args[3:4]}>"

    async def wait(self) -> int:
        """Wait for the child to end; its exit code, or ``-N`` when signal N killed it."""
        return await asyncio.shield(self._exited)

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _exit(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set_result(code)


class Zygote:
    """The node's side of its zygote: started on first use, restarted if it dies, closed with the node.

    Args:
        python: the interpreter (the one the node runs labkit programs with).
        log_path: where the zygote's own output goes (its children's goes where each spawn says).
        preload: the modules the zygote imports before it serves.
        network: the network namespace the zygote (and so every child) lives in; -1 for the emulator's own.
    """

    def __init__(self, python: str, log_path: Path, *, preload: Sequence[str] = PRELOAD, network: int = -1):
        self.python = python
        self.network = network
        self.log_path = Path(log_path)
        self.preload = tuple(preload)
        self._socket: socket.socket | None = None
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._replies: deque[tuple[asyncio.Future[ForkedProcess], list[str]]] = deque()
        self._children: dict[int, ForkedProcess] = {}
        self._starting = asyncio.Lock()
        self._served = False
        self._broken = False

    @property
    def pid(self) -> int | None:
        """The zygote's pid while it runs."""
        return self._process.pid if self._process is not None and self._process.returncode is None else None

    async def spawn(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, stdin: int, stdout: int,
                    stderr: int, sandbox: sandboxing.Sandbox | None = None) -> ForkedProcess:
        """Fork a child that runs ``argv`` as a fresh interpreter would.

        Args:
            argv: ``<python> -s -m <module> args…`` (:func:`forkable` says which the node sends).
            env: the child's whole environment.
            cwd: its working directory.
            stdin: its standard input (a file descriptor, sent to the zygote).
            stdout: its standard output.
            stderr: its standard error.
            sandbox: the pod's sandbox, which the child enters before it runs the module; none by default.

        Raises:
            ZygoteUnavailable: the zygote cannot be had; start the program another way.
        """
        module = module_of(argv, self.python)
        if module is None:
            raise ZygoteUnavailable(f"not a -m command line of {self.python}: {argv[:4]}")
        sock = await self._ensure()
        request = json.dumps({"argv": list(argv), "module": module, "args": list(argv[4:]), "env": dict(env),
                              "cwd": str(cwd), "sandbox": None if sandbox is None else sandbox.to_json()}).encode()
        loop = asyncio.get_running_loop()
        while True:
            try:
                socket.send_fds(sock, [request], [stdin, stdout, stderr])
                break
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(sock, writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(sock)
            except OSError as exc:
                raise ZygoteUnavailable(f"the zygote is gone: {exc}") from exc
        # Replies come in the order of requests: nothing awaited between the send and this append.
        reply: asyncio.Future[ForkedProcess] = loop.create_future()
        self._replies.append((reply, list(argv)))
        return await reply

    async def prepare(self) -> None:
        """Start the zygote now rather than at the first spawn, so its imports overlap other work.

        The first program it forks (istiod, the first proxy) then waits for nothing but the fork; a zygote that
        cannot start is left to :meth:`spawn` to report, which starts programs afresh.
        """
        with contextlib.suppress(ZygoteUnavailable):
            await self._ensure()

    async def close(self) -> None:
        """Stop the zygote (its children, if any are left, die with it) and wait until it is gone."""
        process, sock, reader = self._process, self._socket, self._reader
        self._process = self._socket = self._reader = None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if sock is not None:
            sock.close()  # the zygote reads end-of-file and exits
        self._lost("the node closed its zygote")
        if process is not None:
            try:
                await asyncio.wait_for(process.wait(), CLOSE_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()

    async def _ensure(self) -> socket.socket:
        async with self._starting:
            if self._socket is not None:
                return self._socket
            if self._broken:
                raise ZygoteUnavailable("the zygote died before serving once; programs start afresh")
            if self._process is not None:  # a dead zygote: reap it before starting the next one
                await self._process.wait()
            from labkit.emulator.node.spawning import die_with  # noqa: PLC0415 - spawning uses this module

            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SOURCE_ROOT), env.get("PYTHONPATH")) if p)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                with self.log_path.open("ab") as log:
                    self._process = await asyncio.create_subprocess_exec(
                        self.python, "-s", "-m", ZYGOTE_MODULE, str(theirs.fileno()), *self.preload,
                        stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT, env=env,
                        pass_fds=(theirs.fileno(),), process_group=0,
                        preexec_fn=die_with(os.getpid(), network=self.network))
            except OSError as exc:
                ours.close()
                self._broken = True
                raise ZygoteUnavailable(f"cannot start the zygote: {exc}") from exc
            finally:
                theirs.close()
            ours.setblocking(False)
            self._socket = ours
            self._reader = asyncio.create_task(self._read(ours), name="zygote reports")
            return ours

    async def _read(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                data = await loop.sock_recv(sock, MAX_MESSAGE)
                if not data:
                    break
                self._handle(json.loads(data))
        except (OSError, ValueError) as exc:
            logger.warning("the zygote's reports stopped: %s", exc)
        if self._socket is sock:
            self._socket = None
            sock.close()
            if not self._served:
                self._broken = True
                logger.warning("the zygote exited before serving (see %s); labkit programs start afresh",
                               self.log_path)
        self._lost("the zygote died")

    def _handle(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            child = self._children.pop(message["exited"], None)
            if child is not None:
                child._exit(message["code"])
            return
        reply, argv = self._replies.popleft()
        if "pid" in message:
            self._served = True
            child = ForkedProcess(message["pid"], argv)
            self._children[child.pid] = child
            if not reply.done():
                reply.set_result(child)
        elif not reply.done():
            reply.set_exception(ZygoteUnavailable(message.get("error", "the zygote refused")))

    def _lost(self, why: str) -> None:
        """The zygote is gone: requests without an answer fail over; its children died with it (SIGKILL)."""
        while self._replies:
            reply, _ = self._replies.popleft()
            if not reply.done():
                reply.set_exception(ZygoteUnavailable(why))
        for child in self._children.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)  # the death signal took the child; its group may remain
            child._exit(-signal.SIGKILL)
        self._children.clear()


# ---- the zygote process ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Request:
    argv: list[str]
    module: str
    args: list[str]
    env: dict[str, str]
    cwd: str
    fds: tuple[int, int, int]
    sandbox: sandboxing.Sandbox | None = None


def _preload(modules: Sequence[str]) -> None:
    import importlib  # noqa: PLC0415

    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:  # a program that cannot be imported still gets its error when it runs
            print(f"zygote: cannot preload {module}: {exc!r}", file=sys.stderr, flush=True)


def _die_with_zygote(zygote: int) -> None:
    """In the child: its own process group, and death when the zygote dies (even by SIGKILL)."""
    os.setpgid(0, 0)
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != zygote:  # the zygote died between fork and prctl: nobody would send the signal
        os._exit(1)


def _serve(sock: socket.socket) -> _Request | None:
    """Fork a child per request and report each child's exit; returns only in a child, or at end of file."""
    defaults = {signum: signal.getsignal(signum) for signum in signal.valid_signals()
                if signum not in {signal.SIGKILL, signal.SIGSTOP}}
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wake-up fd hears of children's exits
    signal.set_wakeup_fd(wake_write)
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    zygote = os.getpid()

    def report(message: dict[str, Any]) -> None:
        sock.sendall(json.dumps(message).encode())

    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for ready, _ in events:
            if ready == wake_read:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_read, 512):
                        pass
                while True:
                    try:
                        pid, status = os.waitpid(-1, os.WNOHANG)
                    except ChildProcessError:
                        break
                    if pid == 0:
                        break
                    report({"exited": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            message, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, 3)
            if not message:
                return None  # the node is gone or closed us: the children die with this process
            try:
                if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(fds) != 3:
                    raise ValueError("a truncated request")
                fields = json.loads(message)
                sandbox = fields.get("sandbox")
                request = _Request(fields["argv"], fields["module"], fields["args"], fields["env"], fields["cwd"],
                                   (fds[0], fds[1], fds[2]),
                                   None if sandbox is None else sandboxing.Sandbox.from_json(sandbox))
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
            except Exception as exc:
                for fd in fds:
                    os.close(fd)
                report({"error": f"zygote: {exc!r}"})
                continue
            if pid == 0:
                _die_with_zygote(zygote)
                signal.set_wakeup_fd(-1)
                for signum, handler in defaults.items():
                    if handler is not None:  # None: not set from Python, so left as the zygote inherited it
                        with contextlib.suppress(OSError, ValueError):
                            signal.signal(signum, handler)
                os.close(wake_read)
                os.close(wake_write)
                return request
            for fd in fds:
                os.close(fd)
            report({"pid": pid})


def _std_stream(fd: int, write: bool, unbuffered: bool, encoding: str, errors: str) -> io.TextIOWrapper:
    """A standard stream as a fresh interpreter makes it (``-u``/``PYTHONUNBUFFERED`` honoured)."""
    raw = io.FileIO(fd, "wb" if write else "rb", closefd=False)
    binary: Any = raw if (write and unbuffered) else (io.BufferedWriter(raw) if write else io.BufferedReader(raw))
    return io.TextIOWrapper(binary, encoding=encoding, errors=errors,
                            line_buffering=write and (raw.isatty() or fd == 2), write_through=write and unbuffered)


def _become(request: _Request, base_path: list[str]) -> None:
    """Turn this fork into what ``python -s -m <module> args…`` would have started, then run the module."""
    # First, while the start-up environment is intact: the title takes the space of argv and environ in place.
    setproctitle.setproctitle(" ".join(request.argv))
    for target, fd in enumerate(request.fds):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") > 0 else 65536)
    try:
        sandboxing.preexec(request.sandbox)  # the zygote is single-threaded, so this fork is too
    except OSError:
        os._exit(126)  # the reason is in the container's log; the node sees the container fail to start
    os.chdir(request.cwd)
    os.environ.clear()
    os.environ.update(request.env)
    extra = [p for p in request.env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = [os.getcwd(), *extra, *(p for p in base_path if p not in extra)]
    unbuffered = bool(request.env.get("PYTHONUNBUFFERED"))
    encoding = request.env.get("PYTHONIOENCODING", "").partition(":")[0] or sys.__stdout__.encoding or "utf-8"
    sys.stdin = sys.__stdin__ = _std_stream(0, False, False, encoding, "strict")
    sys.stdout = sys.__stdout__ = _std_stream(1, True, unbuffered, encoding, "strict")
    sys.stderr = sys.__stderr__ = _std_stream(2, True, unbuffered, encoding, "backslashreplace")
    sys.argv = [request.module, *request.args]
    sys.orig_argv = list(request.argv)
    import random  # noqa: PLC0415

    random.seed()  # os.register_at_fork reseeds too; a program may have made an instance of its own meanwhile
    # The module runs as __main__, as with -m; a copy imported under its own name would make runpy warn.
    sys.modules.pop(request.module, None)
    import runpy  # noqa: PLC0415

    runpy.run_module(request.module, run_name="__main__", alter_sys=True)


def main() -> None:
    """The zygote: import, freeze, serve; in each child, become the program (an exit ends the child as usual)."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    own = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    base_path = [p for p in sys.path[1:] if p not in own]
    _preload(sys.argv[2:])
    gc.collect()
    gc.freeze()  # the collector leaves the imported objects' pages alone: children keep sharing them
    with sock:
        request = _serve(sock)
    if request is not None:
        _become(request, base_path)

