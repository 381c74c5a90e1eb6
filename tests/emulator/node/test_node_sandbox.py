"""The pod sandbox with real processes: hostname, /tmp, the service-account path, volumes, and the fallback."""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from labkit.emulator.network.addresses import IpPool
from labkit.emulator.node import NodeRuntime, forking, sandboxing
from labkit.testing import address_plan

pytestmark = pytest.mark.skipif(not sandboxing.available(), reason="this machine cannot make pod sandboxes")
DEADLINE = 8.0


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox", "command": ["sleep", "infinity"]}
    for key in ("volumeMounts", "workingDir", "env", "envFrom", "resources"):
        if key in spec:
            container[key] = spec.pop(key)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "sample", "uid": str(uuid.uuid4()), "labels": {"app": "x"}},
            "spec": {"containers": [container], "serviceAccountName": "reader", "nodeName": "node1", **spec}}


class _Objects:
    """ConfigMaps and Secrets as the node reads them."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], dict[str, str]] = {}

    def read(self, namespace: str, kind: str, name: str) -> dict[str, str] | None:
        return self.data.get((kind, name))


async def _exec(runtime: NodeRuntime, name: str, argv: list[str], container: str | None = None) -> tuple[int, str, str]:
    process = await runtime.exec("sample", name, container, argv)
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = await asyncio.gather(process.stdout.read(), process.stderr.read())
    await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


def _run(tmp_path: Path, body: Any, objects: _Objects | None = None, **options: Any) -> None:
    plan = address_plan()
    ca = tmp_path / "ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\nfake\n-----END CERTIFICATE-----\n")
    statuses: dict[str, dict[str, Any]] = {}

    async def main() -> None:
        runtime = NodeRuntime("cluster1", "node1", tmp_path / "node", IpPool(plan.pod_network(1), what="pod IP"),
                              lambda ns, name, status: statuses.__setitem__(name, status),
                              ca_file=ca, issue_token=lambda ns, account, aud, seconds: f"token-of-{ns}-{account}",
                              read_data=(objects or _Objects()).read, restart_backoff=0.2, **options)
        try:
            await body(runtime, statuses)
        finally:
            await runtime.shutdown()
    asyncio.run(main())


async def _running(statuses: dict[str, dict[str, Any]], name: str) -> None:
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        states = [c["state"] for c in (statuses.get(name) or {}).get("containerStatuses") or []]
        if states and all("running" in s for s in states):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} is not running: {statuses.get(name)}")


def test_a_pod_has_its_hostname_its_tmp_and_the_service_account_files(tmp_path: Path) -> None:
    marker = f"labkit-sandbox-{uuid.uuid4().hex}"

    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        await runtime.sync_pod(_pod("web-1"))
        await _running(statuses, "web-1")
        assert await _exec(runtime, "web-1", ["hostname"]) == (0, "web-1\n", "")
        code, _, err = await _exec(runtime, "web-1", ["sh", "-c", f"echo inside > /tmp/{marker}"])
        assert (code, err) == (0, "")
        assert await _exec(runtime, "web-1", ["cat", f"/tmp/{marker}"]) == (0, "inside\n", "")
        assert not Path("/tmp", marker).exists()  # the machine's /tmp is untouched
        account = sandboxing.SERVICEACCOUNT_PATH
        code, out, _ = await _exec(runtime, "web-1", ["sh", "-c", f"cat {account}/token; echo; cat {account}/namespace;"
                                                                  f" echo; head -1 {account}/ca.crt"])
        assert (code, out) == (0, "token-of-sample-reader\nsample\n-----BEGIN CERTIFICATE-----\n")
        code, _, err = await _exec(runtime, "web-1", ["sh", "-c", f"echo x > {account}/token"])
        assert code != 0 and "Read-only file system" in err

    _run(tmp_path, body)


def test_volumes_are_at_their_mount_paths_and_a_config_map_follows_its_object(tmp_path: Path) -> None:
    objects = _Objects()
    objects.data[("ConfigMap", "settings")] = {"greeting": "hello"}

    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        volumes = [{"name": "settings", "configMap": {"name": "settings"}}, {"name": "scratch", "emptyDir": {}}]
        mounts = [{"name": "settings", "mountPath": "/etc/labkit-settings"},
                  {"name": "scratch", "mountPath": "/labkit-scratch"}]
        await runtime.sync_pod(_pod("app-1", volumes=volumes, volumeMounts=mounts, workingDir="/srv/labkit-app"))
        await _running(statuses, "app-1")
        assert await _exec(runtime, "app-1", ["cat", "/etc/labkit-settings/greeting"]) == (0, "hello", "")
        assert await _exec(runtime, "app-1", ["pwd"]) == (0, "/srv/labkit-app\n", "")
        code, _, _ = await _exec(runtime, "app-1", ["sh", "-c", "echo kept > /labkit-scratch/f && ls /etc >/dev/null"])
        assert code == 0
        assert await _exec(runtime, "app-1", ["cat", "/labkit-scratch/f"]) == (0, "kept\n", "")
        for path in ("/etc/labkit-settings", "/labkit-scratch", "/srv/labkit-app"):
            assert not Path(path).exists()  # nothing was made on the machine
        objects.data[("ConfigMap", "settings")] = {"greeting": "changed"}
        runtime.volume_sources_changed()
        assert await _exec(runtime, "app-1", ["cat", "/etc/labkit-settings/greeting"]) == (0, "changed", "")

    _run(tmp_path, body, objects)


def test_without_the_sandbox_pods_run_as_before(tmp_path: Path) -> None:
    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        await runtime.sync_pod(_pod("plain-1"))
        await _running(statuses, "plain-1")
        code, out, _ = await _exec(runtime, "plain-1", ["hostname"])
        assert code == 0 and out.strip() != "plain-1"

    assert not sandboxing.available({sandboxing.ENABLE_VARIABLE: "0"})
    _run(tmp_path, body, sandbox=False)


def test_a_program_forked_by_the_zygote_enters_the_same_sandbox(tmp_path: Path) -> None:
    (tmp_path / "hostname_probe.py").write_text(
        "import os, socket\nprint(socket.gethostname(), sorted(os.listdir('/tmp')), flush=True)\n")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "tmp" / "only-in-the-pod").write_text("")
    sandbox = sandboxing.Sandbox("forked-1", (sandboxing.Bind(str(tmp_path / "tmp"), "/tmp"),), keep=(str(tmp_path),),
                                 workdir=str(tmp_path))

    async def main() -> None:
        zygote = forking.Zygote(sys.executable, tmp_path / "zygote.log", preload=())
        try:
            with (tmp_path / "out").open("wb") as out, open("/dev/null", "rb") as null:
                child = await zygote.spawn([sys.executable, "-s", "-m", "hostname_probe"], env=dict(os.environ),
                                           cwd=tmp_path, stdin=null.fileno(), stdout=out.fileno(),
                                           stderr=out.fileno(), sandbox=sandbox)
            assert await asyncio.wait_for(child.wait(), DEADLINE) == 0
        finally:
            await zygote.close()

    asyncio.run(main())
    # The pod's /tmp holds its file and the folder of the node (kept at its own path), not the machine's /tmp.
    hostname, _, listing = (tmp_path / "out").read_text().strip().partition(" ")
    kept = {tmp_path.relative_to("/tmp").parts[0]} if tmp_path.is_relative_to("/tmp") else set()
    assert (hostname, set(ast.literal_eval(listing))) == ("forked-1", {"only-in-the-pod", *kept})


def test_a_link_the_pod_puts_where_its_volume_is_written_does_not_make_the_node_write_elsewhere(
        tmp_path: Path) -> None:
    objects = _Objects()
    objects.data[("ConfigMap", "settings")] = {"greeting": "hello"}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        await runtime.sync_pod(_pod("app-2", volumes=[{"name": "settings", "configMap": {"name": "settings"}}],
                                    volumeMounts=[{"name": "settings", "mountPath": "/etc/labkit-settings"}]))
        await _running(statuses, "app-2")
        # The pod's folder is its working directory: its programs can reach the folder the node writes the volume in.
        code, _, err = await _exec(runtime, "app-2", ["sh", "-c", f"rm -r etc/labkit-settings && "
                                                                  f"ln -s {elsewhere} etc/labkit-settings"])
        assert (code, err) == (0, "")
        objects.data[("ConfigMap", "settings")] = {"greeting": "changed", "more": "x"}
        runtime.volume_sources_changed()
        assert list(elsewhere.iterdir()) == []

    _run(tmp_path, body, objects)


def test_projected_and_downward_api_volumes_are_written_at_their_mount_paths(tmp_path: Path) -> None:
    objects = _Objects()
    objects.data[("ConfigMap", "kube-root-ca.crt")] = {"ca.crt": "the root"}
    objects.data[("Secret", "creds")] = {"user": "admin", "password": "s3cret"}

    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        volumes = [
            {"name": "access", "projected": {"sources": [
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"secret": {"name": "creds", "items": [{"key": "user", "path": "user"}]}},
                {"secret": {"name": "absent", "optional": True}},
                {"downwardAPI": {"items": [{"path": "namespace",
                                            "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
            {"name": "podinfo", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                {"path": "memory", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory",
                                                        "divisor": "1Mi"}}]}}]
        mounts = [{"name": "access", "mountPath": "/var/run/labkit-access"},
                  {"name": "podinfo", "mountPath": "/etc/podinfo"}]
        await runtime.sync_pod(_pod("info-1", volumes=volumes, volumeMounts=mounts,
                                    resources={"limits": {"memory": "32Mi"}}))
        await _running(statuses, "info-1")
        script = ("cd /var/run/labkit-access && ls && cat ca.crt user namespace && echo && "
                  "cat /etc/podinfo/labels /etc/podinfo/name /etc/podinfo/memory")
        assert await _exec(runtime, "info-1", ["sh", "-c", script]) == (
            0, "ca.crt\nnamespace\nuser\nthe rootadminsample\napp=\"x\"info-132", "")

    _run(tmp_path, body, objects)


def test_two_containers_share_an_empty_dir_at_different_paths_and_work_inside_it(tmp_path: Path) -> None:
    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        pod = _pod("pair-1", volumes=[{"name": "code", "emptyDir": {}}, {"name": "notes", "emptyDir": {}}])
        pod["spec"]["containers"] = [
            {"name": "fetch", "image": "busybox",
             "command": ["sh", "-c", "mkdir -p /labkit-git/src && echo cloned > /labkit-git/src/main.c; sleep 60"],
             "volumeMounts": [{"name": "code", "mountPath": "/labkit-git"}]},
            # /logs is a folder of the node's in the pod's folder (the containers' logs): the volume is not it.
            {"name": "build", "image": "busybox", "command": ["sleep", "infinity"], "workingDir": "/labkit-work/src",
             "volumeMounts": [{"name": "code", "mountPath": "/labkit-work"}, {"name": "notes", "mountPath": "/logs"}]}]
        await runtime.sync_pod(pod)
        await _running(statuses, "pair-1")
        build = ["sh", "-c", "pwd; cat main.c; ls -A /logs"]
        end = time.monotonic() + DEADLINE
        while (result := await _exec(runtime, "pair-1", build, "build"))[1] != "/labkit-work/src\ncloned\n":
            assert time.monotonic() < end, result
            await asyncio.sleep(0.05)
        assert result == (0, "/labkit-work/src\ncloned\n", "")

    _run(tmp_path, body)


def test_a_sub_path_expr_naming_a_missing_variable_holds_the_container_as_a_kubelet_does(tmp_path: Path) -> None:
    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        mounts = [{"name": "scratch", "mountPath": "/labkit-logs", "subPathExpr": "$(POD_NAME)/$(NOPE)"}]
        env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
        await runtime.sync_pod(_pod("expr-1", volumes=[{"name": "scratch", "emptyDir": {}}], volumeMounts=mounts,
                                    env=env))
        end = time.monotonic() + DEADLINE
        while not (waiting := _waiting(statuses, "expr-1")):
            assert time.monotonic() < end, statuses.get("expr-1")
            await asyncio.sleep(0.01)
        assert waiting == {"reason": "CreateContainerConfigError", "message": "missing value for NOPE"}

    _run(tmp_path, body)


def test_a_link_the_pod_puts_where_a_sub_path_goes_refuses_the_exec_rather_than_show_the_machine(
        tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    async def body(runtime: NodeRuntime, statuses: dict[str, dict[str, Any]]) -> None:
        mounts = [{"name": "scratch", "mountPath": "/labkit-all"},
                  {"name": "scratch", "mountPath": "/labkit-part", "subPath": "part"}]
        await runtime.sync_pod(_pod("link-1", volumes=[{"name": "scratch", "emptyDir": {}}], volumeMounts=mounts))
        await _running(statuses, "link-1")
        code, _, err = await _exec(runtime, "link-1", ["sh", "-c", f"rmdir /labkit-all/part && "
                                                                   f"ln -s {elsewhere} /labkit-all/part"])
        assert (code, err) == (0, "")
        with pytest.raises(OSError, match='failed to prepare subPath for volumeMount "scratch" of container "main"'):
            await _exec(runtime, "link-1", ["ls", "/labkit-part"])

    _run(tmp_path, body)


def test_entering_refuses_a_folder_that_became_a_link_out_of_the_pods_folder(tmp_path: Path) -> None:
    pod, elsewhere = tmp_path / "pod", tmp_path / "elsewhere"
    (pod / "data").mkdir(parents=True)
    (pod / ".sandbox").mkdir()
    elsewhere.mkdir()
    sandbox = sandboxing.Sandbox("race-1", (sandboxing.Bind(str(pod / "data"), "/labkit-data"),),
                                 scratch=str(pod / ".sandbox"), root=str(pod.resolve()))
    argv = sandboxing.entering_argv(sandbox, ["/bin/sh", "-c", "exit 0"])
    assert subprocess.run(argv, capture_output=True, check=False).returncode == 0
    # Swapped after the node chose the folder: what would be mounted is what the link leads to.
    (pod / "data").rmdir()
    (pod / "data").symlink_to(elsewhere)
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 126
    assert "/labkit-data: its folder leads out of the pod's folder" in result.stderr


def _waiting(statuses: dict[str, dict[str, Any]], name: str) -> dict[str, Any]:
    states = [c["state"] for c in (statuses.get(name) or {}).get("containerStatuses") or []]
    return states[0].get("waiting", {}) if states and states[0].get("waiting", {}).get("message") else {}
