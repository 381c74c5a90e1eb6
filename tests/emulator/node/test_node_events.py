"""The kubelet's Events from a NodeRuntime running real processes: the happy path, a bad image, a failing probe."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from .test_node_runtime import DEADLINE, Node, is_ready, pod, run

Said = tuple[str, str, str, str, str]  # pod name, type, reason, message, fieldPath


class Recorder:
    def __init__(self) -> None:
        self.said: list[Said] = []

    def __call__(self, involved: Any, type: str, reason: str, message: str, *, field_path: str = "") -> None:
        assert involved["kind"] == "Pod" and involved["uid"]
        self.said.append((involved["name"], type, reason, message, field_path))

    def reasons(self, name: str) -> list[str]:
        return [s[2] for s in self.said if s[0] == name]

    async def until(self, name: str, reason: str, times: int = 1) -> list[Said]:
        end = time.monotonic() + DEADLINE
        while self.reasons(name).count(reason) < times:
            assert time.monotonic() < end, f"{name}: {reason} x{times} not said; said {self.reasons(name)}"
            await asyncio.sleep(0.01)
        return [s for s in self.said if s[0] == name]


def test_a_running_pod_is_pulled_created_started_and_killed(tmp_path: Path) -> None:
    recorder = Recorder()

    async def body(node: Node) -> None:
        manifest = pod("web", ports=[{"containerPort": 5000}])
        manifest["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
        await node.runtime.sync_pod(manifest)
        await node.ready("sample", "web")
        said = await recorder.until("web", "Started")
        assert [s[2] for s in said] == ["Pulled", "Created", "Started"]
        assert all(s[1] == "Normal" and s[4] == "spec.containers{main}" for s in said)
        assert said[1][3] == "Created container: main" and said[2][3] == "Started container main"
        await node.runtime.remove_pod("sample", "web", manifest["metadata"]["uid"])
        assert recorder.said[-1][1:4] == ("Normal", "Killing", "Stopping container main")

    run(tmp_path, body, record_event=recorder)


def test_an_unknown_image_fails_then_backs_off_again_and_again(tmp_path: Path) -> None:
    recorder = Recorder()

    async def body(node: Node) -> None:
        await node.runtime.sync_pod(pod("mystery", image="foo/bar:1"))
        said = await recorder.until("mystery", "BackOff", times=3)
        assert [s[2] for s in said[:3]] == ["Pulling", "Failed", "Failed"]
        assert said[1][3].startswith('Failed to pull image "foo/bar:1"') and "nginx" in said[1][3]
        assert said[2][1:4] == ("Warning", "Failed", "Error: ErrImagePull")
        backoff = next(s for s in said if s[2] == "BackOff")
        assert backoff[3].startswith('Back-off pulling image "foo/bar:1"')
        assert ("mystery", "Warning", "Failed", "Error: ImagePullBackOff", "spec.containers{main}") in said
        assert not is_ready(node.statuses[("sample", "mystery")])

    run(tmp_path, body, record_event=recorder)


def test_a_failing_readiness_probe_is_unhealthy(tmp_path: Path) -> None:
    recorder = Recorder()

    async def body(node: Node) -> None:
        probe = {"httpGet": {"path": "/missing", "port": 5000}, "periodSeconds": 1}
        await node.runtime.sync_pod(pod("never", readinessProbe=probe, ports=[{"containerPort": 5000}]))
        said = await recorder.until("never", "Unhealthy")
        unhealthy = next(s for s in said if s[2] == "Unhealthy")
        assert unhealthy[1] == "Warning" and unhealthy[3].startswith('Readiness probe failed: Get "http://')
        assert unhealthy[3].split('"')[1].endswith(":5000/missing")

    run(tmp_path, body, record_event=recorder)
