"""Starting, finding and stopping the emulator process from the outside (``labkit up/status/down``).

The emulator runs detached (its own session), so it survives the notebook kernel or terminal that
started it; this module finds it again through ``state.json`` in the state directory. Starting while
one runs with the same clusters is a no-op that returns the running one; stopping sends SIGTERM, waits
for the emulator to stop its pods and proxies, and only then falls back to SIGKILL of its process
group (children also carry a parent-death signal, so none outlives it).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from labkit.core.contract import KUBECONFIG_FILE, LOG_FILE, PID_FILE, STATE_FILE, AddressPlan
from labkit.errors import EmulatorError

# Kept light on purpose: `import labkit` imports this module, and must not pull in the emulator itself.
DEFAULT_CLUSTERS = ("cluster1", "cluster2", "cluster3")
# Emulators this process started: the handle is kept so that stopping one also reaps it (no zombie,
# no "subprocess is still running" warning); emulators started elsewhere are found by pid instead.
_launched: dict[int, subprocess.Popen[bytes]] = {}


def default_state_dir() -> Path:
    """``$LABKIT_HOME`` or ``~/.labkit``."""
    return Path(os.environ.get("LABKIT_HOME") or Path.home() / ".labkit")


@dataclass(frozen=True)
class Emulator:
    """A running emulator."""

    pid: int
    state_dir: Path
    clusters: dict[str, str]  # name -> API server URL
    started: float
    block: int  # the second octet of the emulator's 127.X.0.0/16
    # Whether pods of different networks are apart (a network namespace each), and what is, or why not.
    separate_networks: bool = False
    networks_detail: str = ""

    @property
    def addresses(self) -> AddressPlan:
        """Where its pods, Services and load balancers live (a static load-balancer address comes from here)."""
        return AddressPlan(self.block)

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig with one context per cluster."""
        return self.state_dir / KUBECONFIG_FILE

    @property
    def log(self) -> Path:
        """The emulator's log file."""
        return self.state_dir / LOG_FILE


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(state_dir: Path | None = None) -> Emulator | None:
    """The emulator running for ``state_dir``, or ``None``."""
    folder = state_dir or default_state_dir()
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not _alive(int(state["pid"])):
        return None
    networks = state.get("networks") or {}
    return Emulator(int(state["pid"]), folder, {name: info["url"] for name, info in state["clusters"].items()},
                    float(state["started"]), int(state["block"]), bool(networks.get("separate")),
                    str(networks.get("detail", "")))


def up(clusters: Sequence[str] = DEFAULT_CLUSTERS, state_dir: Path | None = None, *, timeout: float = 60.0,
       block: int | None = None, watch_history: int | None = None, networks: str = "") -> Emulator:
    """Start the emulator with ``clusters`` (or return the one already running with them).

    Args:
        clusters: cluster names, which are also the kubeconfig context names.
        state_dir: where the kubeconfig, logs and pod files live (default :func:`default_state_dir`).
        timeout: seconds to wait for every API server to answer.
        block: force the 127.X.0.0/16 block (tests use it to keep emulators apart).
        watch_history: events each cluster keeps for resuming watches (a real server compacts too).
        networks: clusters that share a physical network (``cluster1=east,cluster2=east``); by default each
            cluster is a network of its own, and pods cannot reach another network's pod IPs.

    Raises:
        EmulatorError: another set of clusters is running there, or the emulator failed to start
            (the message quotes the end of its log).
    """
    folder = state_dir or default_state_dir()
    running = status(folder)
    if running is not None:
        if list(running.clusters) == list(clusters):
            return running
        raise EmulatorError(f"an emulator with clusters {', '.join(running.clusters)} is already running "
                            f"(pid {running.pid}, {folder}); stop it first with: labkit down")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_FILE).unlink(missing_ok=True)
    command = [sys.executable, "-m", "labkit.emulator", "--state-dir", str(folder), "--clusters", ",".join(clusters)]
    if block is not None:
        command += ["--block", str(block)]
    if watch_history is not None:
        command += ["--watch-history", str(watch_history)]
    if networks:
        command += ["--networks", networks]
    with (folder / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   start_new_session=True, close_fds=True)
    _launched[process.pid] = process
    (folder / PID_FILE).write_text(str(process.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = status(folder)
        if found is not None and found.pid == process.pid:
            return found
        if process.poll() is not None:
            raise EmulatorError(f"the emulator exited with code {process.returncode} while starting:\n"
                                f"{_tail(folder / LOG_FILE)}")
        time.sleep(0.05)
    _terminate(process.pid, 5.0)
    raise EmulatorError(f"the emulator did not become ready within {timeout:.0f} s:\n{_tail(folder / LOG_FILE)}")


def down(state_dir: Path | None = None, *, timeout: float = 20.0) -> bool:
    """Stop the emulator and everything it started; returns whether one was running."""
    folder = state_dir or default_state_dir()
    pid = None
    with contextlib.suppress(OSError, ValueError):
        pid = int((folder / PID_FILE).read_text())
    running = status(folder)
    if running is not None:
        pid = running.pid
    if pid is None or not _alive(pid):
        (folder / PID_FILE).unlink(missing_ok=True)
        return False
    _terminate(pid, timeout)
    (folder / PID_FILE).unlink(missing_ok=True)
    (folder / STATE_FILE).unlink(missing_ok=True)
    return True


def _terminate(pid: int, timeout: float) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid) or _zombie(pid):
            break
        time.sleep(0.05)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    launched = _launched.pop(pid, None)
    if launched is not None:
        launched.wait()


def _zombie(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] == "Z"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
