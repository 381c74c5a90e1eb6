"""Which program plays which image, and what an unknown image says."""

from __future__ import annotations

import pytest

from labkit.emulator.node import images


@pytest.mark.parametrize(
    ("image", "program", "port"),
    [
        ("registry.istio.io/release/examples-helloworld-v1:1.0", "helloworld", 5000),
        ("docker.io/istio/examples-helloworld-v2", "helloworld", 5000),
        ("istio/examples-helloworld-v1@sha256:" + "a" * 64, "helloworld", 5000),
        ("nginx", "nginx", 80),
        ("nginx:alpine", "nginx", 80),
        ("docker.io/library/nginx:1.27", "nginx", 80),
        ("docker.io/kennethreitz/httpbin", "httpbin", 80),
        ("mccutchen/go-httpbin:v2.15.0", "httpbin", 8080),
        ("localhost:5000/mccutchen/go-httpbin", "httpbin", 8080),
        ("labkit/whoami:1.0", "whoami", 8000),
    ],
)
def test_servers_match_by_repository_whatever_the_registry_and_tag(image: str, program: str, port: int) -> None:
    matched = images.match_image(image)
    assert matched is not None
    assert (matched.name, matched.default_ports[0]) == (program, port)


def test_helloworld_version_comes_from_the_image() -> None:
    v1 = images.match_image("registry.istio.io/release/examples-helloworld-v1:1.0")
    v2 = images.match_image("docker.io/istio/examples-helloworld-v2:1.0")
    assert v1 is not None and v2 is not None
    assert dict(v1.env)["SERVICE_VERSION"] == "v1"
    assert dict(v2.env)["SERVICE_VERSION"] == "v2"


def test_repository_drops_registry_tag_and_digest() -> None:
    assert images.repository("registry.istio.io/release/examples-helloworld-v1:1.0") == \
        "release/examples-helloworld-v1"
    assert images.repository("nginx:alpine") == "nginx"
    assert images.repository("localhost:5000/foo/bar@sha256:abc") == "foo/bar"
    assert images.repository("curlimages/curl") == "curlimages/curl"


@pytest.mark.parametrize(
    "command",
    [["/bin/sleep", "infinity"], ["sleep", "3650d"], ["sh", "-c", "sleep 3650d"],
     ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep infinity"], ["tail", "-f", "/dev/null"]],
)
def test_the_sleep_sample_idles_whatever_the_image(command: list[str]) -> None:
    for image in ("curlimages/curl", "governmentpaas/curl-ssl", "docker.io/istio/base", "nginx"):
        launch = images.plan_launch(image, command, None)
        assert launch is not None
        assert launch.program.name == "sleep"


def test_the_curl_image_without_a_sleep_runs_the_machines_curl() -> None:
    launch = images.plan_launch("curlimages/curl:8.11.0", None, ["-s", "http://helloworld:5000/hello"])
    assert launch is not None
    assert launch.host_argv == ("curl", "-s", "http://helloworld:5000/hello")


def test_an_unknown_image_has_no_program_and_a_message_listing_the_known_ones() -> None:
    assert images.plan_launch("foo/bar:1", None, None) is None
    message = images.pull_error_message("foo/bar:1")
    assert message.startswith('Failed to pull image "foo/bar:1": labkit\'s embedded node runs images as local '
                              "programs and knows: registry.istio.io/release/examples-helloworld-v1, ")
    for known in ("examples-helloworld-v2", "curlimages/curl", "nginx", "kennethreitz/httpbin",
                  "mccutchen/go-httpbin"):
        assert known in message


@pytest.mark.parametrize("image", ["busybox:1.36", "alpine", "docker.io/library/ubuntu:24.04", "debian"])
def test_shell_images_run_their_command_with_the_machines_posix_shell(image: str) -> None:
    launch = images.plan_launch(image, ["sh", "-c", "echo hi; exit 3"], None)
    assert launch is not None and launch.host_argv == ("/bin/sh", "-c", "echo hi; exit 3")
    launch = images.plan_launch(image, ["/bin/bash", "-c", "env"], None)
    assert launch is not None and launch.host_argv == ("/bin/sh", "-c", "env")
    # Without an entrypoint, args alone are the command; other programs come from the pod's PATH.
    launch = images.plan_launch(image, None, ["nslookup", "kubernetes.default"])
    assert launch is not None and launch.host_argv == ("nslookup", "kubernetes.default")
    launch = images.plan_launch(image, None, None)
    assert launch is not None and launch.program.name == "sleep" and launch.host_argv is None


@pytest.mark.parametrize(("command", "idle"), [
    (["sleep", "3600"], True), (["sleep", "1h"], True), (["sleep", "30m", "30m"], True), (["sleep", "inf"], True),
    (["sleep", "10"], False), (["sh", "-c", "echo hi; sleep 1"], False), (["sleep", "0.5"], False),
])
def test_only_a_long_sleep_is_idling(command: list[str], idle: bool) -> None:
    assert images.is_idle_command(command) is idle


def test_a_shell_image_runs_a_script_that_prints_before_it_waits() -> None:
    launch = images.plan_launch("busybox", ["sh", "-c", "echo ready; sleep infinity"], None)
    assert launch is not None and launch.host_argv == ("/bin/sh", "-c", "echo ready; sleep infinity")
    launch = images.plan_launch("busybox", ["sh", "-c", "trap 'exit 0' TERM; sleep infinity"], None)
    assert launch is not None and launch.host_argv is None and launch.program.name == "sleep"
