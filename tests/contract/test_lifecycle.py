"""Processes are owned: a killed workload restarts, and ``labkit down`` leaves nothing running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from labkit.emulator import launching

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line or environment mentions ``text`` (how pod processes carry their pod)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            blob = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text.encode() in blob and state != "Z":
            found.append(int(entry.name))
    return found


def test_killed_workload_process_restarts(kubectl: Any) -> None:
    ctx = ["--context", "cluster1", "-n", "restarts"]
    kubectl("--context", "cluster1", "create", "ns", "restarts")
    kubectl(*ctx, "apply", "-f", str(SAMPLES / "helloworld.yaml"), "-l", "version=v1")
    kubectl(*ctx, "apply", "-f", str(SAMPLES / "helloworld.yaml"), "-l", "service=helloworld")
    kubectl(*ctx, "rollout", "status", "deploy/helloworld-v1", "--timeout=60s")
    pod = kubectl(*ctx, "get", "pods", "-l", "app=helloworld", "-o", "jsonpath={.items[0].metadata.name}").stdout
    (pid,) = [p for p in processes_mentioning(f"HOSTNAME={pod}") if b"helloworld" in Path(f"/proc/{p}/cmdline")
              .read_bytes()]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        out = kubectl(*ctx, "get", "pod", pod, "-o",
                      "jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}")
        if out.stdout == "1 true":
            break
        assert time.monotonic() < deadline, f"pod never restarted: {out.stdout}"
        time.sleep(0.2)
    assert kubectl(*ctx, "get", "pod", pod).stdout.split("\n")[1].split()[3] == "1"
    cluster_ip = kubectl(*ctx, "get", "svc", "helloworld", "-o", "jsonpath={.spec.clusterIP}").stdout
    import urllib.request

    with urllib.request.urlopen(f"http://{cluster_ip}:5000/hello", timeout=10) as response:
        assert response.read().decode() == f"Hello version: v1, instance: {pod}\n"


def test_down_leaves_no_process_behind(tmp_path: Path) -> None:
    state = tmp_path / "home"
    emulator = launching.up(["solo"], state)
    env = dict(os.environ, KUBECONFIG=str(emulator.kubeconfig))
    kubectl = [sys.executable, "-c", "import sys; from kubernetes import config, client, utils; "
               "api = config.new_client_from_config(context='solo'); "
               "utils.create_from_yaml(api, sys.argv[1], namespace='default')", str(SAMPLES / "sleep.yaml")]
    subprocess.run(kubectl, check=True, env=env, timeout=60)
    deadline = time.monotonic() + 30
    while len(processes_mentioning(str(state))) < 2:  # the emulator and the sleep pod
        assert time.monotonic() < deadline, "the pod never started"
        time.sleep(0.1)
    assert emulator.pid in processes_mentioning(str(state))

    assert launching.down(state) is True
    assert processes_mentioning(str(state)) == []
    assert launching.status(state) is None
    assert launching.down(state) is False


def test_up_twice_returns_the_running_emulator(emulator: launching.Emulator) -> None:
    again = launching.up(list(emulator.clusters), emulator.state_dir)
    assert again.pid == emulator.pid
    try:
        launching.up(["other"], emulator.state_dir)
    except Exception as exc:
        assert type(exc).__name__ == "EmulatorError"
        assert "labkit down" in str(exc)
    else:
        raise AssertionError("starting other clusters over a running emulator must be refused")


def test_cli_up_status_down(tmp_path: Path) -> None:
    labkit = str(Path(sys.executable).with_name("labkit"))
    env = dict(os.environ, LABKIT_HOME=str(tmp_path / "home"))
    up = subprocess.run([labkit, "up", "--clusters", "east,west"], capture_output=True, text=True, env=env,
                        timeout=60, check=False)
    try:
        assert up.returncode == 0, up.stderr
        kubeconfig = tmp_path / "home" / "kubeconfig"
        assert f"export KUBECONFIG={kubeconfig}" in up.stdout
        assert "east" in up.stdout and "west" in up.stdout
        shown = subprocess.run([labkit, "status"], capture_output=True, text=True, env=env, timeout=30, check=False)
        assert shown.returncode == 0 and "embedded clusters running" in shown.stdout and "west" in shown.stdout
        again = subprocess.run([labkit, "up", "--clusters", "east,west"], capture_output=True, text=True, env=env,
                               timeout=60, check=False)
        assert again.returncode == 0 and again.stdout.split("(pid")[1] == up.stdout.split("(pid")[1]
    finally:
        down = subprocess.run([labkit, "down"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert down.stdout.strip() == "embedded clusters stopped"
    after = subprocess.run([labkit, "status"], capture_output=True, text=True, env=env, timeout=30, check=False)
    assert after.returncode == 1 and "labkit up" in after.stdout
