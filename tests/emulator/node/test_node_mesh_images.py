"""Istio's images as programs: proxyv2 runs labkit's agent, pilot runs labkit's istiod, with site-packages."""

from __future__ import annotations

import sys

import pytest

from labkit.emulator.node import images

SIDECAR_ARGS = ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local", "--proxyLogLevel=warning"]


@pytest.mark.parametrize("image", [
    "docker.io/istio/proxyv2:1.30.0",
    "istio/proxyv2:1.24.2-distroless",
    "gcr.io/istio-release/proxyv2:1.30.0",
    "registry.example.com:5000/mirror/istio/proxyv2@sha256:abc",
    "auto",  # not an image: the injector must replace it, and an unknown image fails loudly
])
def test_proxy_images_run_the_agent_with_the_container_args(image: str) -> None:
    launch = images.plan_launch(image, None, SIDECAR_ARGS)
    if image == "auto":
        assert launch is None
        return
    assert launch is not None
    assert launch.program.mesh_proxy and launch.host_argv is None
    assert images.python_argv(launch, "/py") == ["/py", "-s", "-m", "labkit.emulator.envoy.agent", *SIDECAR_ARGS]


def test_gateway_args_are_passed_as_given() -> None:
    args = ["proxy", "router", "--domain", "istio-system.svc.cluster.local", "--proxyLogLevel=warning"]
    launch = images.plan_launch("docker.io/istio/proxyv2:1.30.0", None, args)
    assert launch is not None
    assert images.python_argv(launch, sys.executable)[3:] == ["labkit.emulator.envoy.agent", *args]


@pytest.mark.parametrize("image", ["docker.io/istio/pilot:1.30.0", "gcr.io/istio-release/pilot:1.30.0"])
def test_pilot_images_run_istiod(image: str) -> None:
    args = ["discovery", "--monitoringAddr=:15014", "--log_output_level=default:info", "--domain", "cluster.local"]
    launch = images.plan_launch(image, None, args)
    assert launch is not None and not launch.program.mesh_proxy
    assert images.python_argv(launch, "/py") == ["/py", "-s", "-m", "labkit.emulator.mesh.istiod", *args]


def test_small_programs_still_start_without_site_packages() -> None:
    launch = images.plan_launch("registry.istio.io/release/examples-helloworld-v1:1.0", None, None)
    assert launch is not None
    argv = images.python_argv(launch, "/py")
    assert argv[:5] == ["/py", "-E", "-s", "-S", str(images.PROGRAMS_DIR / "helloworld.py")]


def test_istio_images_are_listed_among_the_known_ones() -> None:
    known = images.known_images()
    assert "docker.io/istio/proxyv2" in known and "docker.io/istio/pilot" in known
    assert images.SOURCE_ROOT.joinpath("labkit", "emulator", "node", "images.py").exists()


@pytest.mark.parametrize(("image", "module"), [
    ("ghcr.io/spiffe/spire-server:1.9.6", "labkit.emulator.spire.server"),
    ("gcr.io/spiffe-io/spire-server:1.5.1", "labkit.emulator.spire.server"),
    ("ghcr.io/spiffe/spire-agent:1.9.6", "labkit.emulator.spire.agent"),
    ("gcr.io/spiffe-io/k8s-workload-registrar:1.5.1", "labkit.emulator.spire.registrar"),
])
def test_spire_images_run_labkit_spire_with_the_container_args(image: str, module: str) -> None:
    args = ["-config", "/run/spire/config/server.conf"]
    launch = images.plan_launch(image, None, args)
    assert launch is not None and launch.program.site
    assert images.python_argv(launch, "/py") == ["/py", "-s", "-m", module, *args]
