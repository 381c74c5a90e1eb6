"""kubectl against embedded clusters: every command the labs teach, answered as a real cluster answers."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from labkit.testing import eventually

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


@pytest.fixture(scope="module")
def sample(kubectl: Any) -> str:
    """helloworld v1 and sleep in namespace sample of cluster2, applied piecewise as Istio's docs do."""
    ctx = ["--context", "cluster2"]
    kubectl(*ctx, "create", "ns", "sample")
    kubectl(*ctx, "label", "namespace", "sample", "istio-injection=enabled")
    out = kubectl(*ctx, "apply", "-n", "sample", "-f", str(SAMPLES / "helloworld.yaml"), "-l", "service=helloworld")
    assert out.stdout.strip() == "service/helloworld created"
    out = kubectl(*ctx, "apply", "-n", "sample", "-f", str(SAMPLES / "helloworld.yaml"), "-l", "version=v1")
    assert out.stdout.strip() == "deployment.apps/helloworld-v1 created"
    kubectl(*ctx, "apply", "-n", "sample", "-f", str(SAMPLES / "sleep.yaml"))
    kubectl(*ctx, "-n", "sample", "rollout", "status", "deploy/helloworld-v1", "--timeout=60s")
    kubectl(*ctx, "-n", "sample", "wait", "--for=condition=Ready", "pod", "-l", "app=sleep", "--timeout=60s")
    return "sample"


def test_namespace_label_is_visible(kubectl: Any, sample: str) -> None:
    out = kubectl("--context", "cluster2", "get", "ns", "sample", "--show-labels").stdout
    assert "istio-injection=enabled" in out and "Active" in out


def test_get_pods_shows_real_columns(kubectl: Any, sample: str) -> None:
    lines = kubectl("--context", "cluster2", "-n", "sample", "get", "pods", "-o", "wide").stdout.splitlines()
    assert lines[0].split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    hello = next(line for line in lines if line.startswith("helloworld-v1-"))
    assert hello.split()[1:4] == ["1/1", "Running", "0"]
    assert hello.split()[5].startswith("127.")  # a pod IP of its own
    assert "cluster2-control-plane" in hello


def test_exec_curl_answers_from_a_helloworld_pod_of_the_same_cluster(kubectl: Any, sample: str) -> None:
    pods = kubectl("--context", "cluster2", "-n", "sample", "get", "pods", "-l", "app=helloworld",
                   "-o", "jsonpath={.items[*].metadata.name}").stdout.split()
    for url in ("helloworld.sample:5000/hello", "helloworld:5000/hello",
                "helloworld.sample.svc.cluster.local:5000/hello"):
        out = kubectl("--context", "cluster2", "exec", "deploy/sleep", "-n", "sample", "--", "curl", "-sS", url)
        assert out.stdout.startswith("Hello version: v1, instance: ")
        assert out.stdout.split("instance: ")[1].strip() in pods


def test_one_exec_carries_a_loop_of_hundreds_of_urls(kubectl: Any, sample: str) -> None:
    # labkit's call loops put every URL into one curl's argv: a long exec request line.
    urls = ["helloworld.sample:5000/hello"] * 400
    out = kubectl("--context", "cluster2", "exec", "deploy/sleep", "-n", "sample", "--", "curl", "-sS", *urls)
    assert out.stdout.count("Hello version: v1") == 400


def test_unknown_name_fails_like_curl_does(kubectl: Any, sample: str) -> None:
    out = kubectl("--context", "cluster2", "exec", "deploy/sleep", "-n", "sample", "--", "curl", "-sS",
                  "nosuch.sample:5000/hello", check=False)
    assert out.returncode == 6  # kubectl exec exits with the remote command's code
    assert "curl: (6) Could not resolve host: nosuch.sample" in out.stderr
    assert "command terminated with exit code 6" in out.stderr


def test_scaled_to_zero_the_service_refuses_connections(kubectl: Any, sample: str) -> None:
    ctx = ["--context", "cluster2", "-n", "sample"]
    kubectl(*ctx, "scale", "deploy/helloworld-v1", "--replicas", "0")
    try:
        eventually(lambda: kubectl(*ctx, "get", "endpoints", "helloworld", "-o", "jsonpath={.subsets}").stdout == "")
        out = kubectl(*ctx, "exec", "deploy/sleep", "--", "curl", "-sS", "helloworld.sample:5000/hello", check=False)
        assert "curl: (7) Failed to connect to helloworld.sample port 5000" in out.stderr
        assert "command terminated with exit code 7" in out.stderr
    finally:
        kubectl(*ctx, "scale", "deploy/helloworld-v1", "--replicas", "1")
        kubectl(*ctx, "rollout", "status", "deploy/helloworld-v1", "--timeout=60s")
    out = kubectl(*ctx, "exec", "deploy/sleep", "--", "curl", "-sS", "helloworld.sample:5000/hello")
    assert out.stdout.startswith("Hello version: v1")


def test_each_cluster_answers_with_its_own_pods(kubectl: Any, sample: str) -> None:
    ctx = ["--context", "cluster3"]
    kubectl(*ctx, "create", "ns", "sample")
    kubectl(*ctx, "apply", "-n", "sample", "-f", str(SAMPLES / "helloworld.yaml"))
    kubectl(*ctx, "apply", "-n", "sample", "-f", str(SAMPLES / "sleep.yaml"))
    kubectl(*ctx, "-n", "sample", "rollout", "status", "deploy/helloworld-v2", "--timeout=60s")
    kubectl(*ctx, "-n", "sample", "rollout", "status", "deploy/sleep", "--timeout=60s")
    versions = {kubectl(*ctx, "exec", "-n", "sample", "deploy/sleep", "--", "curl", "-sS",
                        "helloworld.sample:5000/hello").stdout.split(",")[0] for _ in range(12)}
    assert versions == {"Hello version: v1", "Hello version: v2"}
    assert "sample" not in kubectl("--context", "cluster1", "get", "ns").stdout


def test_cacerts_secret_from_files_and_jsonpath(kubectl: Any, tmp_path: Path) -> None:
    from labkit.pki import make_mesh

    make_mesh(tmp_path, ["cluster1"], key="ec-p256")
    folder = tmp_path / "cluster1"
    kubectl("--context", "cluster1", "create", "ns", "istio-system")
    names = ("ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem")
    files = [f"--from-file={folder / name}" for name in names]
    out = kubectl("--context", "cluster1", "create", "secret", "generic", "cacerts", "-n", "istio-system", *files)
    assert out.stdout.strip() == "secret/cacerts created"
    encoded = kubectl("--context", "cluster1", "get", "secret", "cacerts", "-n", "istio-system",
                      "-o", r"jsonpath={.data.root-cert\.pem}").stdout
    assert base64.b64decode(encoded).decode() == (folder / "root-cert.pem").read_text()
    listing = kubectl("--context", "cluster1", "get", "secrets", "-n", "istio-system").stdout
    assert "cacerts" in listing and "Opaque" in listing and " 4 " in listing


def test_load_balancer_gets_the_static_address_it_asks_for(kubectl: Any, emulator) -> None:
    ctx = ["--context", "cluster1"]
    kubectl(*ctx, "create", "ns", "lb-test")
    block = json.loads((emulator.state_dir / "state.json").read_text())["block"]
    wanted = f"127.{block}.200.77"
    manifest = f"""
apiVersion: v1
kind: Service
metadata: {{name: cluster-load-balancer, namespace: lb-test}}
spec:
  type: LoadBalancer
  loadBalancerIP: {wanted}
  selector: {{app: nothing}}
  ports: [{{name: tls, port: 15443}}]
"""
    kubectl(*ctx, "apply", "-f", "-", input=manifest)
    line = eventually(lambda: next((row for row in kubectl(*ctx, "get", "svc", "-n", "lb-test").stdout.splitlines()
                                  if row.startswith("cluster-load-balancer") and wanted in row), None))
    assert line.split()[1] == "LoadBalancer"
    assert line.split()[3] == wanted
    assert line.split()[4].startswith("15443:")
    # The same address asked for by another cluster is refused, naming the holder.
    clash = manifest.replace("lb-test", "default")
    out = kubectl("--context", "cluster2", "apply", "-f", "-", input=clash, check=False)
    assert out.returncode != 0 and wanted in out.stderr
    out = kubectl(*ctx, "delete", "service", "cluster-load-balancer", "-n", "lb-test")
    assert out.stdout.strip() == 'service "cluster-load-balancer" deleted'
    assert "cluster-load-balancer" not in kubectl(*ctx, "get", "svc", "-n", "lb-test").stdout


def test_create_deploy_and_expose_like_the_nginx_lab(kubectl: Any, sample: str) -> None:
    ctx = ["--context", "cluster2"]
    kubectl(*ctx, "create", "ns", "secure")
    out = kubectl(*ctx, "-n", "secure", "create", "deploy", "nginx", "--image=nginx", "--port=80")
    assert out.stdout.strip() == "deployment.apps/nginx created"
    out = kubectl(*ctx, "-n", "secure", "expose", "deploy", "nginx", "--port", "80")
    assert out.stdout.strip() == "service/nginx exposed"
    kubectl(*ctx, "-n", "secure", "rollout", "status", "deploy/nginx", "--timeout=60s")
    page = kubectl(*ctx, "-n", "sample", "exec", "deploy/sleep", "--", "curl", "-sS", "nginx.secure").stdout
    assert "<title>Welcome to nginx!</title>" in page


def test_describe_logs_and_server_side_apply(kubectl: Any, sample: str) -> None:
    ctx = ["--context", "cluster2", "-n", "sample"]
    kubectl(*ctx, "exec", "deploy/sleep", "--", "curl", "-sS", "helloworld:5000/hello")
    logs = kubectl(*ctx, "logs", "deploy/helloworld-v1").stdout
    assert "GET /hello" in logs
    described = kubectl(*ctx, "describe", "pod", "-l", "app=helloworld").stdout
    assert "Status:" in described and "Running" in described and "registry.istio.io/release/examples-helloworld-v1" \
        in described
    out = kubectl(*ctx, "apply", "--server-side", "-f", str(SAMPLES / "helloworld.yaml"), "-l", "version=v1")
    assert "serverside-applied" in out.stdout
    again = kubectl(*ctx, "apply", "--server-side", "-f", str(SAMPLES / "helloworld.yaml"), "-l", "version=v1")
    assert "serverside-applied" in again.stdout


def test_get_watch_streams_changes(kubectl: Any, sample: str) -> None:
    assert kubectl.env is not None
    import shutil

    watcher = subprocess.Popen([shutil.which("kubectl"), "--context", "cluster2", "-n", "sample", "get", "cm", "-w"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl.env)
    try:
        time.sleep(1.0)  # let the watch start before the change it must see
        kubectl("--context", "cluster2", "-n", "sample", "create", "configmap", "watched", "--from-literal=a=b")
        deadline = time.monotonic() + 20
        seen = ""
        while "watched" not in seen and time.monotonic() < deadline:
            seen += watcher.stdout.readline()
        assert "watched" in seen
    finally:
        watcher.kill()
        watcher.communicate()


def test_unknown_image_is_err_image_pull_naming_known_images(kubectl: Any, sample: str) -> None:
    ctx = ["--context", "cluster2", "-n", "sample"]
    kubectl(*ctx, "create", "deploy", "mystery", "--image=example.com/mystery:1")
    reason = eventually(lambda: kubectl(*ctx, "get", "pods", "-l", "app=mystery", "-o",
                                      "jsonpath={.items[0].status.containerStatuses[0].state.waiting.reason}",
                                      check=False).stdout in ("ErrImagePull", "ImagePullBackOff"))
    assert reason
    message = kubectl(*ctx, "get", "pods", "-l", "app=mystery", "-o",
                      "jsonpath={.items[0].status.containerStatuses[0].state.waiting.message}").stdout
    assert "example.com/mystery:1" in message and "examples-helloworld-v1" in message and "nginx" in message
    kubectl(*ctx, "delete", "deploy", "mystery")


def test_bad_input_names_the_object_and_field(kubectl: Any, sample: str) -> None:
    broken = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: broken}
spec:
  selector: {matchLabels: {app: one}}
  template:
    metadata: {labels: {app: two}}
    spec: {containers: [{name: c, image: nginx}]}
"""
    out = kubectl("--context", "cluster2", "-n", "sample", "apply", "-f", "-", input=broken, check=False)
    assert out.returncode != 0
    assert 'Deployment.apps "broken" is invalid' in out.stderr or 'Deployment "broken" is invalid' in out.stderr
    assert "spec.template.metadata.labels" in out.stderr and "does not match" in out.stderr
    out = kubectl("--context", "cluster2", "-n", "nope", "create", "configmap", "x", check=False)
    assert 'namespaces "nope" not found' in out.stderr


def test_deleting_a_namespace_cascades(kubectl: Any) -> None:
    ctx = ["--context", "cluster3"]
    kubectl(*ctx, "create", "ns", "doomed")
    kubectl(*ctx, "-n", "doomed", "create", "deploy", "web", "--image=nginx")
    kubectl(*ctx, "-n", "doomed", "rollout", "status", "deploy/web", "--timeout=60s")
    out = kubectl(*ctx, "delete", "ns", "doomed", "--wait=true", "--timeout=60s")
    assert out.stdout.strip() == 'namespace "doomed" deleted'
    assert "doomed" not in kubectl(*ctx, "get", "ns").stdout
    assert "web-" not in kubectl(*ctx, "get", "pods", "-A").stdout
