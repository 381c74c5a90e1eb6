"""The node's zygote: a labkit program forked from a warm interpreter behaves as one started afresh, and is owned.

The programs here are small modules written into the test's folder, run as ``python -s -m <module>`` from there
(``-m`` finds them in the working directory, as it would for a fresh interpreter).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import NodeRuntime, forking, spawning
from labkit.testing import address_plan

DEADLINE = 15.0

PROBE = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    line = sys.stdin.readline()
    print(json.dumps({
        "argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ), "stdin": line, "name": __name__,
        "pid": os.getpid(), "pgid": os.getpgid(0), "ppid": os.getppid(), "threads": threading.active_count(),
        "path0": sys.path[0], "sigint": signal.getsignal(signal.SIGINT) is signal.default_int_handler,
        "sigterm": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
        "fds": sorted(int(fd) for fd in os.listdir("/proc/self/fd")),
        "cmdline": open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode().split(),
    }))
    print("to stderr", file=sys.stderr)
    if sys.argv[1] == "wait":
        time.sleep(60)
    if sys.argv[1] == "raise":
        raise RuntimeError("the program failed")
    sys.exit(int(sys.argv[1]))
""")


def argv(*args: str) -> list[str]:
    return [sys.executable, "-s", "-m", "forked_probe", *args]


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in {"Z", "X"}


async def until_gone(*pids: int) -> None:
    end = time.monotonic() + DEADLINE
    while not all(gone(pid) for pid in pids):
        assert time.monotonic() < end, f"still running: {[pid for pid in pids if not gone(pid)]}"
        await asyncio.sleep(0.02)


class Run:
    """A program run through a zygote, its stdout and stderr kept apart."""

    def __init__(self, folder: Path, code: int, out: str, err: str):
        self.code = code
        self.report: dict[str, Any] = json.loads(out) if out.strip() else {}
        self.err = err


async def run_forked(zygote: forking.Zygote, folder: Path, args: list[str], *, env: dict[str, str],
                     stdin: bytes = b"") -> Run:
    read, write = os.pipe()
    os.write(write, stdin)
    os.close(write)
    tag = uuid.uuid4().hex[:8]
    with (folder / f"{tag}.out").open("wb") as out, (folder / f"{tag}.err").open("wb") as err:
        process = await zygote.spawn(argv(*args), env=env, cwd=folder, stdin=read, stdout=out.fileno(),
                                     stderr=err.fileno())
    os.close(read)
    code = await process.wait()
    assert process.returncode == code
    return Run(folder, code, (folder / f"{tag}.out").read_text(), (folder / f"{tag}.err").read_text())


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "forked_probe.py").write_text(PROBE)
    return tmp_path


def test_a_forked_program_gets_its_argv_env_cwd_stdio_exit_code_and_process_group(folder: Path) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "PROBE": "a value", "HOSTNAME": "pod-1"}

    async def main() -> tuple[Run, Run, Run, int | None]:
        zygote = forking.Zygote(sys.executable, folder / "zygote.log")  # the programs' modules preloaded
        try:
            three = await run_forked(zygote, folder, ["3", "an arg"], env=env, stdin=b"hello\n")
            zero = await run_forked(zygote, folder, ["0"], env={})
            failed = await run_forked(zygote, folder, ["raise"], env=env)
            return three, zero, failed, zygote.pid
        finally:
            await zygote.close()

    three, zero, failed, zygote_pid = asyncio.run(main())
    report = three.report
    assert three.code == 3 and zero.code == 0 and failed.code == 1
    assert report["argv"] == ["3", "an arg"] and report["name"] == "__main__"
    assert report["cwd"] == str(folder) and report["path0"] == str(folder)
    assert report["env"] == env and zero.report["env"] == {}
    assert report["stdin"] == "hello\n" and three.err == "to stderr\n"
    assert report["pgid"] == report["pid"] and report["ppid"] == zygote_pid  # its own group, the zygote's child
    assert report["fds"][:3] == [0, 1, 2] and len(report["fds"]) == 4  # the three given, and listdir's own
    assert report["threads"] == 1 and report["sigint"] and report["sigterm"]  # as a fresh interpreter has them
    assert report["cmdline"] == [*argv("3", "an"), "arg"]  # ps shows the program, not the zygote
    assert "RuntimeError: the program failed" in failed.err
    assert zero.report["pid"] != report["pid"] != failed.report["pid"]
    assert gone(zygote_pid)


def test_a_forked_program_killed_by_a_signal_reports_it_negative_as_asyncio_does(folder: Path) -> None:
    async def main() -> tuple[int, int]:
        zygote = forking.Zygote(sys.executable, folder / "zygote.log", preload=())
        try:
            with (folder / "out").open("wb") as out, open(os.devnull, "rb") as null:
                process = await zygote.spawn(argv("wait"), env={}, cwd=folder, stdin=null.fileno(),
                                             stdout=out.fileno(), stderr=out.fileno())
            end = time.monotonic() + DEADLINE
            while "to stderr" not in (folder / "out").read_text():  # it runs, past its start-up
                assert time.monotonic() < end and process.returncode is None, (folder / "out").read_text()
                await asyncio.sleep(0.01)
            await spawning.terminate(process, 5.0)  # SIGTERM to the group, as the node stops a container
            return await process.wait(), process.pid
        finally:
            await zygote.close()

    code, pid = asyncio.run(main())
    assert code == -signal.SIGTERM
    assert gone(pid)


def test_the_zygote_dying_takes_its_children_and_the_next_spawn_starts_another(folder: Path) -> None:
    async def main() -> None:
        zygote = forking.Zygote(sys.executable, folder / "zygote.log", preload=())
        try:
            with (folder / "out").open("wb") as out, open(os.devnull, "rb") as null:
                child = await zygote.spawn(argv("wait"), env={}, cwd=folder, stdin=null.fileno(),
                                           stdout=out.fileno(), stderr=out.fileno())
            first = zygote.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            assert await asyncio.wait_for(child.wait(), DEADLINE) == -signal.SIGKILL
            await until_gone(child.pid)
            again = await run_forked(zygote, folder, ["0"], env={})
            assert again.code == 0 and zygote.pid not in {None, first}
        finally:
            await zygote.close()

    asyncio.run(main())


OWNER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from labkit.emulator.node import forking

    async def main():
        folder = Path(sys.argv[1])
        zygote = forking.Zygote(sys.executable, folder / "zygote.log", preload=())
        with (folder / "out").open("wb") as out, open("/dev/null", "rb") as null:
            child = await zygote.spawn([sys.executable, "-s", "-m", "forked_probe", "wait"], env={}, cwd=folder,
                                       stdin=null.fileno(), stdout=out.fileno(), stderr=out.fileno())
        print(zygote.pid, child.pid, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


def test_nothing_the_zygote_started_outlives_its_owner_killed_with_sigkill(folder: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        zygote_pid, child_pid = (int(word) for word in owner.stdout.readline().split())
        assert not gone(zygote_pid) and not gone(child_pid)
        owner.kill()  # no cleanup code runs: only the death signals can take the zygote and its child
        owner.wait()
        asyncio.run(until_gone(zygote_pid, child_pid))
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
        if owner.stdout is not None:
            owner.stdout.close()


@pytest.mark.parametrize("zygote", [True, False], ids=["forked", "started afresh"])
def test_the_node_runs_istio_images_through_its_zygote_with_the_same_result(tmp_path: Path, zygote: bool) -> None:
    """``pilot-agent`` without a command it knows prints its usage and exits 2, forked or not."""
    plan = address_plan()
    pool = IpPool(plan.pod_network(1), reserved=frozenset({plan.api_server_address(1)}), what="pod IP")
    statuses: dict[str, Any] = {}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "agent", "namespace": "sample", "uid": str(uuid.uuid4())},
           "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False, "containers": [
               {"name": "istio-proxy", "image": "docker.io/istio/proxyv2:1.30.0", "args": ["version"]}]}}

    async def main() -> tuple[Any, bytes, bool]:
        runtime = NodeRuntime("cluster1", "node1", tmp_path, pool, lambda _ns, name, status: statuses.update(
            {name: status}), restart_backoff=0.2, zygote=zygote)
        try:
            await runtime.sync_pod(pod)
            end = time.monotonic() + DEADLINE
            while "terminated" not in (state := statuses.get("agent", {}).get("containerStatuses", [{}])[0].get(
                    "state", {})):
                assert time.monotonic() < end, f"the agent never ended: {statuses.get('agent')}"
                await asyncio.sleep(0.02)
            used = runtime.zygote is not None and runtime.zygote.pid is not None
            return state["terminated"], runtime.logs("sample", "agent"), used
        finally:
            await runtime.shutdown()

    terminated, logs, used = asyncio.run(main())
    assert terminated["exitCode"] == 2 and terminated["reason"] == "Error"
    assert b"pilot-agent" in logs
    assert used == zygote
