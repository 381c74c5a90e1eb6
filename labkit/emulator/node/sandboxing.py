"""A sandbox per pod: its own hostname and a filesystem view where the pod's paths live in the pod's folder.

A pod here is a set of host processes (DESIGN decision 9). Without a sandbox, ``kubectl exec … hostname`` prints
the machine's name, ``/var/run/secrets/kubernetes.io/serviceaccount/`` does not exist, and ``kubectl cp`` into the
pod's ``/tmp`` writes the machine's ``/tmp``. On Linux, every container process and every exec therefore enters a
sandbox between fork and exec, made of what the kernel gives without root:

* a **UTS namespace**, whose hostname is the pod's name;
* a **mount namespace** (made private first, so nothing propagates back to the machine) in which the pod's paths are
  bind mounts of folders inside the pod's folder: ``/tmp``, the working directory, the service-account files,
  every volume at its ``mountPath``. The runtime keeps writing the folders on the host side (tokens rotate,
  ConfigMaps change) and the pod sees each change at once: a bind mount is the same directory;
* a **user namespace** that maps the caller's own uid and gid, when the caller is not root already: it is what
  lets an ordinary user make the other two. Root makes them directly, which keeps what root had (privileged ports,
  nginx's 80).

A mount point the machine does not have (``/var/run/secrets`` under ``/run``, ``/config``) is made on a tmpfs laid
over its deepest existing parent, with the parent's entries bound back (symlinks copied), so the parent looks as
before plus the new folder; for a missing top-level folder the tmpfs becomes the root (moved over ``/``, then
``chroot``). Nothing is ever created on the machine outside the pod's folder. Paths the pod's programs must keep
reaching at their own paths (the emulator's state directory, with the Unix sockets of the mesh and SPIRE, the
interpreter, labkit's source) are bound back wherever a new mount hid them (the state directory may live under
``/tmp``).

The rest of the machine stays as it is: the pod's programs are the machine's (curl, ``/bin/sh``, Envoy, Python),
the network is their network's namespace (:mod:`labkit.emulator.network.separation`, joined before the sandbox is
entered) or the machine's loopback, and paths outside the sandboxed ones are the machine's too. A pod's own
``/tmp``, volumes and service-account files are what this isolates.

Entering is done in the child with ctypes (Python 3.11 has no ``os.unshare``): ``unshare`` of a user namespace
needs a single-threaded process, which a child right after ``fork`` is. :func:`available` probes once whether the
kernel allows it (user namespaces may be disabled: ``kernel.unprivileged_userns_clone=0``,
``user.max_user_namespaces=0``, AppArmor's ``apparmor_restrict_unprivileged_userns``); ``LABKIT_SANDBOX=0`` turns
the sandbox off. Without it pods run as before, and ``labkit doctor`` says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENABLE_VARIABLE = "LABKIT_SANDBOX"
SERVICEACCOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWUSER = 0x10000000
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_NOEXEC = 0x8
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_RELATIME = 1 << 21
ST_RELATIME = 0x1000
# statvfs's ST_NOSUID, ST_NODEV, ST_NOEXEC, ST_NOATIME, ST_NODIRATIME have the values of the MS_ flags.
_LOCKED_FLAGS = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME

_libc: Any = None
if sys.platform == "linux":
    with contextlib.suppress(OSError, AttributeError):
        _libc = ctypes.CDLL(None, use_errno=True)
        # Looked up now, in the parent: a child forked from a threaded process should do as little as it can
        # (a symbol lookup takes the dynamic linker's lock, which another thread may have held at the fork).
        for _name in ("unshare", "mount", "sethostname", "chroot"):
            getattr(_libc, _name)


class SandboxUnavailable(OSError):
    """The kernel refused a step of entering the sandbox (the message names the step)."""


@dataclass(frozen=True)
class Bind:
    """One path of the pod's view: ``source`` (in the pod's folder, on the machine) seen at ``target``.

    Args:
        source: a folder (or file) on the machine.
        target: the absolute path the pod's programs use.
        read_only: whether the pod may not write through it (ConfigMap, Secret and token volumes).
    """

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True)
class Sandbox:
    """What one pod's processes see: the hostname, the bind mounts, the paths kept visible, the directory.

    Args:
        hostname: the pod's name.
        binds: the pod's paths, applied in order (parents before their children).
        keep: machine paths that must stay reachable at their own path (state directory, interpreter, source).
        workdir: the working directory to enter once the view is made (empty: stay where the fork left it).
        scratch: a folder in the pod's folder where a new root can be assembled when a mount point needs a
            top-level folder the machine lacks.
        root: the pod's folder (resolved): every bind's source must be inside it when it is mounted, whatever the
            pod's programs did to its folders since the node chose it (empty: not checked).
    """

    hostname: str
    binds: tuple[Bind, ...] = ()
    keep: tuple[str, ...] = ()
    workdir: str = ""
    scratch: str = ""
    root: str = ""

    def to_json(self) -> dict[str, Any]:
        """A plain form, for the zygote's requests."""
        return {"hostname": self.hostname, "binds": [[b.source, b.target, b.read_only] for b in self.binds],
                "keep": list(self.keep), "workdir": self.workdir, "scratch": self.scratch, "root": self.root}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Sandbox:
        """The sandbox :meth:`to_json` described."""
        return cls(value["hostname"], tuple(Bind(s, t, bool(r)) for s, t, r in value.get("binds") or ()),
                   tuple(value.get("keep") or ()), value.get("workdir", ""), value.get("scratch", ""),
                   value.get("root", ""))


def switched_on(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the sandbox is asked for: on Linux unless ``LABKIT_SANDBOX=0``.

    Args:
        environ: the environment to read; this process's by default.
    """
    if sys.platform != "linux" or _libc is None:
        return False
    return (os.environ if environ is None else environ).get(ENABLE_VARIABLE, "1").strip().lower() not in {
        "0", "false", "no", "off"}


@functools.cache
def probe() -> str:
    """Why the kernel does not let this process make a sandbox, or ``""`` when it does (probed once, ~20 ms).

    A child tries what every pod does (the namespaces, a private mount tree, a hostname) and exits.
    """
    if sys.platform != "linux" or _libc is None:
        return "not Linux: no user, mount and UTS namespaces"
    with contextlib.suppress(OSError, ValueError):
        if Path("/proc/sys/kernel/unprivileged_userns_clone").read_text().strip() == "0" and os.geteuid() != 0:
            return "user namespaces are disabled (kernel.unprivileged_userns_clone=0)"
    try:
        result = subprocess.run(entering_argv(Sandbox("labkit-probe"), ["/bin/sh", "-c", "exit 0"]),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                check=False, timeout=10, cwd="/")
    except (OSError, subprocess.SubprocessError) as exc:
        return _refusal_reason(str(exc))
    if result.returncode != 0:
        return _refusal_reason(result.stderr.decode(errors="replace").strip() or f"exit {result.returncode}")
    return ""


def _refusal_reason(detail: str) -> str:
    hints = []
    with contextlib.suppress(OSError, ValueError):
        if Path("/proc/sys/user/max_user_namespaces").read_text().strip() == "0":
            hints.append("user.max_user_namespaces=0")
    with contextlib.suppress(OSError, ValueError):
        if Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").read_text().strip() == "1":
            hints.append("AppArmor restricts unprivileged user namespaces "
                         "(kernel.apparmor_restrict_unprivileged_userns=1)")
    return f"the kernel refused namespaces ({'; '.join(hints) or detail})"


def available(environ: Mapping[str, str] | None = None) -> bool:
    """Whether pods run sandboxed here: asked for (:func:`switched_on`) and allowed by the kernel (:func:`probe`).

    Args:
        environ: the environment to read; this process's by default.
    """
    return switched_on(environ) and not probe()


# ---- in the child, between fork and exec ------------------------------------------------------------------------

def _check(result: int, step: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise SandboxUnavailable(errno, f"sandbox: {step}: {os.strerror(errno)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {source} on {target}")


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class _View:
    """The mount namespace being built, and where in it things may be created without touching the machine."""

    def __init__(self, scratch: str):
        self.tops: list[str] = []  # a tmpfs laid over a folder: only the folder is ours, its entries the machine's
        self.binds: list[str] = []  # the pod's binds: all below them is in the pod's folder
        self.scratch = scratch
        self.fds: list[int] = []

    def owned(self, path: str) -> bool:
        return path in self.tops or any(path == top or path.startswith(top.rstrip("/") + "/") for top in self.binds)

    def pin(self, path: str) -> str:
        """A handle on ``path`` as it is now, usable as a mount source after later mounts hide it."""
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        self.fds.append(fd)
        return f"/proc/self/fd/{fd}"

    def make_point(self, target: str, directory: bool) -> str:
        """Make ``target`` exist in the view without creating anything on the machine; its resolved path."""
        path = os.path.realpath(target)
        if os.path.lexists(path):
            return path
        parent = path
        while not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        if not self.owned(parent):
            self.shadow(parent)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if directory:
            os.mkdir(path)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
        return path

    def shadow(self, folder: str) -> None:
        """Lay a tmpfs over ``folder`` holding what it held (bound back), so new entries can be made in it."""
        entries = [(name, os.lstat(os.path.join(folder, name))) for name in sorted(os.listdir(folder))]
        handle = self.pin(folder)
        if folder == "/":
            if not self.scratch:
                raise SandboxUnavailable(0, "sandbox: a new top-level folder needs a scratch folder")
            top = self.scratch
        else:
            top = folder
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
        for name, info in entries:
            place = os.path.join(top, name)
            if stat.S_ISLNK(info.st_mode):
                os.symlink(os.readlink(f"{handle}/{name}"), place)
                continue
            if stat.S_ISDIR(info.st_mode):
                os.mkdir(place, stat.S_IMODE(info.st_mode))
            else:
                os.close(os.open(place, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644))
            with contextlib.suppress(SandboxUnavailable):  # an entry that cannot be bound (e.g. gone) stays empty
                _mount(f"{handle}/{name}", place, None, MS_BIND | MS_REC)
        if folder == "/":
            os.chdir(top)
            _mount(top, "/", None, MS_MOVE)
            _check(_libc.chroot(b"."), "chroot into the new root")
            os.chdir("/")
        self.tops.append(folder)


def _read_only(target: str) -> None:
    """Make a bind mount read-only, keeping the flags a user namespace may not drop (else the kernel says EPERM)."""
    kept = os.statvfs(target).f_flag & _LOCKED_FLAGS
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY | kept | (MS_RELATIME if os.statvfs(target).f_flag & ST_RELATIME else 0)
    with contextlib.suppress(SandboxUnavailable):  # read-only is a courtesy: a writable volume still works
        _mount(None, target, None, flags)


def enter(sandbox: Sandbox) -> None:
    """Enter ``sandbox``: call in a single-threaded child between fork and exec.

    Args:
        sandbox: what the pod sees.

    Raises:
        SandboxUnavailable: a step the kernel refused (the child should not run the program).
    """
    uid, gid = os.getuid(), os.getgid()
    root = os.geteuid() == 0
    _check(_libc.unshare(CLONE_NEWNS | CLONE_NEWUTS | (0 if root else CLONE_NEWUSER)), "unshare")
    if not root:
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here may reach the machine's mounts
    name = sandbox.hostname.encode()
    _check(_libc.sethostname(name, len(name)), "sethostname")
    view = _View(sandbox.scratch)
    try:
        # A missing top-level folder means a new root, made first: the scratch folder is visible only until the
        # pod's /tmp covers it, and the root's own mounts (the machine's) are copied before any of the pod's.
        if any(not os.path.lexists("/" + os.path.realpath(b.target).split("/")[1]) for b in sandbox.binds):
            view.shadow("/")
        kept = [(path, view.pin(path), os.stat(path)) for path in sandbox.keep if os.path.exists(path)]
        sources = [(bind, view.pin(bind.source)) for bind in sandbox.binds]
        if sandbox.root:
            # What is mounted is what was opened: a link the pod's programs put in place of a folder after the node
            # chose it must not bring the machine's path into the pod.
            inside = sandbox.root.rstrip("/") + "/"
            for bind, source in sources:
                real = os.readlink(source)
                if real != sandbox.root and not real.startswith(inside):
                    raise SandboxUnavailable(0, f"sandbox: {bind.target}: its folder leads out of the pod's folder "
                                                f"(to {real})")
        for bind, source in sources:
            directory = stat.S_ISDIR(os.stat(source).st_mode)
            target = view.make_point(bind.target, directory)
            _mount(source, target, None, MS_BIND | MS_REC)
            if bind.read_only:
                _read_only(target)
            view.binds.append(target)
        for path, source, was in kept:  # what a new mount hid goes back where it was
            with contextlib.suppress(OSError):
                now = os.stat(path)
                if (now.st_dev, now.st_ino) == (was.st_dev, was.st_ino):
                    continue
            target = view.make_point(path, True) if not os.path.lexists(path) else os.path.realpath(path)
            _mount(source, target, None, MS_BIND | MS_REC)
        if sandbox.workdir:
            os.chdir(sandbox.workdir)
    finally:
        for fd in view.fds:
            os.close(fd)


def preexec(sandbox: Sandbox | None) -> None:
    """Enter ``sandbox`` (if any) in a ``preexec_fn``, saying on stderr why it could not be (the container's log,
    or the exec's error stream) before the start fails."""
    if sandbox is None:
        return
    try:
        enter(sandbox)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.write(2, f"labkit: cannot enter the pod's sandbox: {exc}\n".encode())
        raise


def describe(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(state, detail)`` for ``labkit doctor``: what a pod's sandbox isolates here, or why pods are not isolated.

    Args:
        environ: the environment to read; this process's by default.
    """
    if not switched_on(environ):
        why = f"{ENABLE_VARIABLE}=0" if sys.platform == "linux" else "not Linux"
        return "off", f"{why}: pods share the machine's hostname, /tmp and paths"
    reason = probe()
    if reason:
        return "off", f"{reason}: pods share the machine's hostname, /tmp and paths"
    how = "mount+UTS" if os.geteuid() == 0 else "user+mount+UTS"
    return "on", f"{how} namespaces: own hostname, /tmp, service account, volumes"


def entering_argv(sandbox: Sandbox | None, argv: list[str], python: str = sys.executable,
                  parent: int = 0) -> list[str]:
    """A command line that enters ``sandbox`` and then execs ``argv`` (an absolute program path and its arguments).

    A fork of the emulator (threaded: asyncio's executors, the API server's) should not run Python code before
    exec; this module, run as a script by a fresh, isolated interpreter (``-I -S``: ~10 ms, one thread), does the
    entering instead.

    Args:
        sandbox: what the pod sees; ``None`` to enter none (the program still starts through this one).
        argv: the program to run in it.
        python: the interpreter.
        parent: a pid the program must die with (``PR_SET_PDEATHSIG``, set here rather than between fork and exec);
            0 for none.
    """
    entered = "null" if sandbox is None else json.dumps(sandbox.to_json(), separators=(",", ":"))
    return [python, "-I", "-S", __file__, str(parent), entered, *argv]


def main() -> None:
    """``python -I -S sandboxing.py <parent pid> <sandbox JSON|null> <program> <args>…``: die with the parent,
    enter, then become the program."""
    parent, entered, program = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3:]
    if parent and _libc is not None:
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)
    try:
        if entered is not None:
            enter(Sandbox.from_json(entered))
    except OSError as exc:
        os.write(2, f"labkit: cannot enter the pod's sandbox: {exc}\n".encode())
        os._exit(126)
    for signum in (signal.SIGPIPE, signal.SIGXFSZ):  # Python ignores them; the program starts as exec leaves it
        signal.signal(signum, signal.SIG_DFL)
    try:
        os.execv(program[0], program)
    except OSError as exc:
        os.write(2, f"labkit: cannot run {program[0]} in the pod's sandbox: {exc}\n".encode())
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
