"""The image programs as processes: what they answer, keep-alive, logs on stdout, prompt SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROGRAMS = Path(__file__).resolve().parents[3] / "labkit" / "emulator" / "node" / "programs"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        assert process.poll() is None, "the program exited before listening"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.005)
    raise AssertionError(f"nothing listened on {port} within {deadline} s")


def _wait_handles_sigterm(pid: int, deadline: float = 5.0) -> None:
    """Poll until the process has installed its SIGTERM handler (before that, SIGTERM kills with -15)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        caught = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                      if line.startswith("SigCgt:"))
        if int(caught.split()[1], 16) & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.005)
    raise AssertionError("the program never handled SIGTERM")


@pytest.fixture
def start(tmp_path: Path) -> Iterator:
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(name: str, **env: str) -> tuple[int, subprocess.Popen[bytes], Path]:
        port = _free_port()
        log = tmp_path / f"{name}-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-E", "-s", "-S", str(PROGRAMS / f"{name}.py")],
                env={"PATH": os.environ.get("PATH", ""), "LABKIT_LISTEN": f"127.0.0.1:{port}", **env},
                stdout=out, stderr=subprocess.STDOUT)
        started.append((process, log))
        _wait_listening(port, process)
        return port, process, log

    try:
        yield run
    finally:
        for process, _ in started:
            if process.poll() is None:
                process.kill()
            process.wait()


def _get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_helloworld_answers_with_its_version_and_pod_name(start) -> None:
    port, _, log = start("helloworld", HOSTNAME="helloworld-v1-abc", SERVICE_VERSION="v2")
    assert _get(port, "/hello")[2] == b"Hello version: v2, instance: helloworld-v1-abc\n"
    assert _get(port, "/health")[2] == b"Helloworld is healthy"
    assert _get(port, "/nope")[0] == 404
    assert '"GET /hello HTTP/1.1" 200' in log.read_text()


def test_whoami_names_itself_its_cluster_and_the_nearest_callers_spiffe_id(start) -> None:
    port, _, _ = start("whoami", HOSTNAME="svc-2-abc", SERVICE_NAME="svc-2", CLUSTER_NAME="cluster2")
    xfcc = ('By=spiffe://cluster.local/ns/istio-system/sa/gw;URI=spiffe://cluster.local/ns/x/sa/far,'
            'By=spiffe://cluster.local/ns/bar/sa/svc-2;Hash=ab;Subject="";URI=spiffe://cluster.local/ns/foo/sa/svc-1')
    assert _get(port, "/", {"X-Forwarded-Client-Cert": xfcc})[2] == \
        b"svc-2 in cluster2 (pod svc-2-abc), called by spiffe://cluster.local/ns/foo/sa/svc-1\n"
    assert _get(port, "/any")[2] == b"svc-2 in cluster2 (pod svc-2-abc), called by (no client certificate)\n"


def test_keep_alive_serves_many_requests_on_one_connection_without_nagle_stalls(start) -> None:
    port, _, _ = start("helloworld", HOSTNAME="hw")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        began = time.monotonic()
        for _ in range(50):
            connection.request("GET", "/hello")
            response = connection.getresponse()
            assert response.read() == b"Hello version: v1, instance: hw\n"
            assert response.getheader("Connection") == "keep-alive"
        # 50 requests with a 40 ms Nagle/delayed-ACK stall each would take 2 s.
        assert time.monotonic() - began < 1.0
        connection.request("GET", "/hello", headers={"Connection": "close"})
        response = connection.getresponse()
        response.read()
        assert response.getheader("Connection") == "close"
    finally:
        connection.close()


def test_http_1_0_without_keep_alive_is_closed_after_the_response(start) -> None:
    port, _, _ = start("nginx")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Welcome to nginx!" in body
    assert f"Content-Length: {len(body)}".encode() in head


def test_nginx_serves_its_welcome_page_and_its_404(start) -> None:
    port, _, log = start("nginx")
    status, headers, body = _get(port, "/")
    assert status == 200
    assert headers["server"].startswith("nginx/1.27.")
    assert b"<title>Welcome to nginx!</title>" in body
    status, _, body = _get(port, "/missing")
    assert status == 404
    assert b"<center><h1>404 Not Found</h1></center>" in body
    assert '"GET /missing HTTP/1.1" 404' in log.read_text()


def test_httpbin_echoes_requests_in_httpbins_shapes(start) -> None:
    port, _, _ = start("httpbin")
    status, _, body = _get(port, "/get?a=1&a=2&b=x", headers={"X-Test": "yes"})
    payload = json.loads(body)
    assert status == 200
    assert payload["args"] == {"a": ["1", "2"], "b": "x"}
    assert payload["headers"]["X-Test"] == "yes"
    assert payload["origin"] == "127.0.0.1"
    assert payload["url"] == f"http://127.0.0.1:{port}/get?a=1&a=2&b=x"
    assert json.loads(_get(port, "/headers")[2])["headers"]["Host"] == f"127.0.0.1:{port}"
    assert json.loads(_get(port, "/ip")[2]) == {"origin": "127.0.0.1"}
    assert json.loads(_get(port, "/user-agent", headers={"User-Agent": "ua/1"})[2]) == {"user-agent": "ua/1"}
    assert _get(port, "/status/503")[0] == 503
    assert json.loads(_get(port, "/anything/x?q=1")[2])["method"] == "GET"
    began = time.monotonic()
    assert _get(port, "/delay/0.2")[0] == 200
    assert time.monotonic() - began >= 0.2


def test_programs_exit_zero_promptly_on_sigterm(start, tmp_path: Path) -> None:
    _, process, _ = start("helloworld")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=2) == 0
    sleeper = subprocess.Popen([sys.executable, "-E", "-s", "-S", str(PROGRAMS / "sleep.py")])
    try:
        _wait_handles_sigterm(sleeper.pid)
        sleeper.send_signal(signal.SIGTERM)
        assert sleeper.wait(timeout=2) == 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()
