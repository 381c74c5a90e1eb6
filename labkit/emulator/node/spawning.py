"""Starting a pod's processes so that none of them can outlive the emulator.

A pod process is started in a process group of its own (so a container's children, like the real
curl the curl shim execs into, are signalled with it) and with ``PR_SET_PDEATHSIG=SIGKILL``: Linux
kills it the moment the emulator dies, even by SIGKILL, when no cleanup code runs (DESIGN decision
3: ``labkit down`` — or a crash — leaves nothing behind). ``prctl`` is called through ctypes in the
child between fork and exec; elsewhere than Linux the flag is simply not set.

The death signal is tied to the *thread* that forked the child. asyncio forks in its event loop
thread, which lives as long as the emulator's node, so that is the right owner.

Labkit programs run as ``python -s -m …`` (the proxy agent, istiod) are forked by the node's zygote instead when
the node has one (:mod:`.forking`): the same process group, the same death with the emulator, a fraction of the
start-up time and memory. Anything else, and anything the zygote cannot take, starts here as before.

Either way the child enters its pod's sandbox (:mod:`.sandboxing`) before it becomes the program, in the fork
(the zygote's, or this process's ``preexec_fn``), or, when gRPC is loaded here (tests that run a node in-process),
through :func:`.sandboxing.entering_argv`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from labkit.emulator.network import separation
from labkit.emulator.node import forking, sandboxing, terminals

PR_SET_PDEATHSIG = 1

_libc: Any = None
if sys.platform == "linux":
    with contextlib.suppress(OSError, AttributeError):
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl  # noqa: B018 - looked up in the parent, not in each child (see .sandboxing)


class Process(Protocol):
    """What the node uses of a started process: an asyncio one or a :class:`~.forking.ForkedProcess`."""

    pid: int
    returncode: int | None

    async def wait(self) -> int: ...


def die_with(parent: int, sandbox: sandboxing.Sandbox | None = None, network: int = -1) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child die with ``parent`` (this process), even when it is SIGKILLed.

    Args:
        parent: this process's pid.
        sandbox: the pod's sandbox, entered next (:mod:`.sandboxing`); none by default.
        network: the network namespace to join first (:mod:`~labkit.emulator.network.separation`), while the
            child still has the emulator's rights over it; -1 for none.
    """
    def setup() -> None:
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would send the signal.
        if os.getppid() != parent:
            os._exit(1)
        if network >= 0:
            separation.enter(network)
        sandboxing.preexec(sandbox)
    return setup


async def spawn(argv: list[str], *, env: Mapping[str, str], cwd: Path, stdin: Any = asyncio.subprocess.DEVNULL,
                stdout: Any = asyncio.subprocess.PIPE, stderr: Any = asyncio.subprocess.PIPE,
                zygote: forking.Zygote | None = None, terminal: bool = False,
                sandbox: sandboxing.Sandbox | None = None, network: int = -1) -> Process:
    """Start ``argv`` in its own process group, dying with this process.

    Args:
        argv: the program (a path) and its arguments.
        env: the whole environment of the child.
        cwd: its working directory.
        stdin: as for :func:`asyncio.create_subprocess_exec`.
        stdout: as for :func:`asyncio.create_subprocess_exec` (a file descriptor for container logs).
        stderr: as for :func:`asyncio.create_subprocess_exec`.
        zygote: the node's zygote, which forks ``argv`` when it is a labkit program run with ``-m`` and no stream
            is a pipe; a zygote that cannot take it leaves the start to this function.
        terminal: ``stdin`` is a terminal's slave end, to become the child's controlling terminal: the child leads
            a session of its own (and so its own process group), as a shell on a terminal does.
        sandbox: the pod's sandbox, entered by the child before it runs ``argv``; none by default.
        network: the network namespace the child joins (a pod's network, when networks are separate); -1 for the
            emulator's own. A zygote serves only the network it was started in.

    Raises:
        OSError: the program cannot be started, or the sandbox cannot be entered (the child says why on its
            stderr).
    """
    if terminal:
        argv, sandbox = _entering(argv, sandbox)
        parent = os.getpid()

        def on_terminal() -> None:
            die_with(parent, sandbox, network)()
            terminals.take_controlling_terminal()

        try:
            return await asyncio.create_subprocess_exec(
                *argv, env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, start_new_session=True,
                preexec_fn=on_terminal)
        except subprocess.SubprocessError as exc:  # only the sandbox raises in the child before exec
            raise sandboxing.SandboxUnavailable(0, f"cannot enter the pod's sandbox: {exc}") from exc
    if zygote is not None and forking.forkable(argv, zygote.python) and asyncio.subprocess.PIPE not in (
            stdin, stdout, stderr):
        with contextlib.ExitStack() as stack:
            def fd(stream: Any) -> int:
                if stream is None:
                    return -1
                if stream == asyncio.subprocess.DEVNULL:
                    return stack.enter_context(open(os.devnull, "r+b")).fileno()
                return stream if isinstance(stream, int) else stream.fileno()

            out = fd(stdout)
            streams = (fd(stdin), out, out if stderr == asyncio.subprocess.STDOUT else fd(stderr))
            if -1 not in streams:  # None (inherit the emulator's) is left to a plain start
                with contextlib.suppress(forking.ZygoteUnavailable):
                    return await zygote.spawn(argv, env=env, cwd=cwd, stdin=streams[0], stdout=streams[1],
                                              stderr=streams[2], sandbox=sandbox)
    if "grpc" in sys.modules:
        # gRPC's at-fork handlers abort a child that runs Python between fork and exec while gRPC threads are busy
        # (in-process tests load gRPC; the emulator does not): a small program dies with us, enters the sandbox
        # and execs argv instead, and the fork runs no Python at all (~10-40 ms more per start).
        argv = sandboxing.entering_argv(sandbox, argv, parent=os.getpid())
        return await asyncio.create_subprocess_exec(*argv, env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout,
                                                    stderr=stderr, process_group=0)
    try:
        return await asyncio.create_subprocess_exec(
            *argv, env=dict(env), cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr,
            process_group=0, preexec_fn=die_with(os.getpid(), sandbox, network),
        )
    except subprocess.SubprocessError as exc:  # only the sandbox raises in the child before exec
        raise sandboxing.SandboxUnavailable(0, f"cannot enter the pod's sandbox: {exc}") from exc


def _entering(argv: list[str], sandbox: sandboxing.Sandbox | None) -> tuple[list[str], sandboxing.Sandbox | None]:
    """``argv`` and the sandbox for the fork to enter; where gRPC is loaded, a program that enters it instead."""
    if sandbox is not None and "grpc" in sys.modules:
        # gRPC's fork handlers and threads make a fork of this process a bad place to run Python before exec (a
        # child aborted): a small program enters the sandbox, then execs argv (~10-40 ms more per start).
        return sandboxing.entering_argv(sandbox, argv), None
    return argv, sandbox


def signal_group(process: Process, signum: int) -> None:
    """Send ``signum`` to the process's group (it leads one); a group already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


async def terminate(process: Process, grace: float) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, and reap the process."""
    if process.returncode is None:
        signal_group(process, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    # Children of the container (a shell's background jobs) may outlive its main process: take the group down.
    signal_group(process, signal.SIGKILL)
    await process.wait()
