"""Parsing call loops: real curl output from local servers in, one row per request out.

The servers stand in for what a loop meets in a mesh: helloworld answering with its version and
instance, a port nobody listens on, a name nobody knows, and Envoy's 503 bodies. curl is the
machine's (the same one the embedded node runs in pods), given exactly the command line
:func:`labkit.traffic.call` execs, so the tests see the frames curl really writes.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from labkit.traffic import COLUMNS, Source, curl_argv, parse_curl_output
from labkit.traffic.calling import _cycle

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed on this machine")
UPSTREAM_RESET = ("upstream connect error or disconnect/reset before headers. reset reason: connection failure, "
                  "transport failure reason: delayed connect error: 111")


class _Handler(BaseHTTPRequestHandler):
    """helloworld on /hello (alternating v1 and v2), Envoy's 503s on /reset and /unhealthy."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the loop relies on
    served = 0

    def do_GET(self) -> None:
        if self.path == "/hello":
            _Handler.served += 1
            version = "v1" if _Handler.served % 2 else "v2"
            self._answer(200, f"Hello version: {version}, instance: helloworld-{version}-776f57d5f6-s7zfc\n")
        elif self.path == "/reset":
            self._answer(503, UPSTREAM_RESET)
        elif self.path == "/unhealthy":
            self._answer(503, "no healthy upstream")
        else:
            self._answer(404, "")

    def _answer(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # quiet: pytest shows stderr on failure
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture(scope="module")
def refused() -> str:
    # A port just released by the OS: nothing listens there, so connecting is refused at once.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hello"


def _curl(urls: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(curl_argv(urls, request_timeout=5), capture_output=True, text=True, timeout=60, check=False)


@needs_curl
def test_a_loop_of_helloworld_calls_is_one_row_per_request(server: str) -> None:
    urls = [f"{server}/hello"] * 20
    done = _curl(urls)
    calls = parse_curl_output(done.stdout, source="cluster1", urls=urls, stderr=done.stderr)
    assert list(calls.columns) == list(COLUMNS)
    assert list(calls["seq"]) == list(range(20))
    assert set(calls["source"]) == {"cluster1"} and set(calls["status"]) == {200}
    assert sorted(calls["version"].value_counts().items()) == [("v1", 10), ("v2", 10)]
    assert set(calls["instance"]) == {"helloworld-v1-776f57d5f6-s7zfc", "helloworld-v2-776f57d5f6-s7zfc"}
    assert (calls["error"] == "").all()
    assert calls["body"].str.startswith("Hello version: ").all() and not calls["body"].str.endswith("\n").any()
    assert (calls["latency_ms"] > 0).all() and (calls["latency_ms"] < 5000).all()


@needs_curl
def test_every_failure_kind_is_a_row_and_curl_goes_on_after_it(server: str, refused: str) -> None:
    urls = [refused, "http://nosuch.invalid/hello", f"{server}/reset", f"{server}/unhealthy", f"{server}/nope",
            "htp://bad-scheme/", "http://[bad", refused, f"{server}/hello"]
    done = _curl(urls)
    calls = parse_curl_output(done.stdout, source="cluster2", urls=urls, stderr=done.stderr).set_index("seq")
    assert len(calls) == len(urls) and list(calls["url"]) == urls
    assert list(calls["status"]) == [0, 0, 503, 503, 404, 0, 0, 0, 200]
    assert calls.loc[0, "error"].startswith("Failed to connect to 127.0.0.1 port ")
    assert "Couldn't connect to server" in calls.loc[0, "error"]
    assert calls.loc[1, "error"] == "Could not resolve host: nosuch.invalid"
    assert calls.loc[2, "error"] == UPSTREAM_RESET and calls.loc[2, "body"] == UPSTREAM_RESET
    assert calls.loc[3, "error"] == "no healthy upstream"
    assert calls.loc[4, "error"] == "HTTP 404"
    assert "not supported" in calls.loc[5, "error"]
    assert calls.loc[6, "error"] == "URL using bad/illegal format or missing URL"
    assert calls.loc[7, "error"] == calls.loc[0, "error"]
    assert calls.loc[8, "error"] == "" and calls.loc[8, "version"] in ("v1", "v2")
    assert calls.loc[:7, "version"].isna().all() and calls.loc[:7, "instance"].isna().all()


GOLDEN = (  # captured from curl 7.88.1 with curl_argv(): a 200, a refused connection, a 503 from Envoy
    "Hello version: v2, instance: helloworld-v2-79d5467d55-bw8tv\n"
    "\n<<<labkit 0 200 0.002081 0 >>>\n"
    "\n<<<labkit 1 000 0.000154 7 Failed to connect to 10.96.0.12 port 5000 after 0 ms: Couldn't connect to server>>>\n"
    "no healthy upstream"
    "\n<<<labkit 2 503 0.000950 0 >>>\n"
)


def test_golden_output_parses_without_curl() -> None:
    url = "http://helloworld.sample:5000/hello"
    calls = parse_curl_output(GOLDEN, source="cluster1", urls=[url] * 3)
    assert calls.to_dict("records") == [
        {"seq": 0, "source": "cluster1", "url": url, "status": 200, "version": "v2",
         "instance": "helloworld-v2-79d5467d55-bw8tv", "latency_ms": pytest.approx(2.081), "error": "",
         "body": "Hello version: v2, instance: helloworld-v2-79d5467d55-bw8tv"},
        {"seq": 1, "source": "cluster1", "url": url, "status": 0, "version": None, "instance": None,
         "latency_ms": pytest.approx(0.154),
         "error": "Failed to connect to 10.96.0.12 port 5000 after 0 ms: Couldn't connect to server", "body": ""},
        {"seq": 2, "source": "cluster1", "url": url, "status": 503, "version": None, "instance": None,
         "latency_ms": pytest.approx(0.95), "error": "no healthy upstream", "body": "no healthy upstream"},
    ]


def test_requests_without_a_frame_still_get_rows() -> None:
    # curl killed after the first transfer: the rest are rows explained by stderr.
    text = "Hello version: v1, instance: helloworld-v1-a\n\n<<<labkit 0 200 0.001 0 >>>\n"
    calls = parse_curl_output(text, source="c", urls=["http://a/"] * 3, stderr="curl: (28) Operation timed out\n")
    assert list(calls["status"]) == [200, 0, 0]
    assert list(calls["error"]) == ["", "curl: (28) Operation timed out", "curl: (28) Operation timed out"]
    assert math.isnan(calls.loc[2, "latency_ms"])
    nothing = parse_curl_output("", source="c", urls=["http://a/"])
    assert list(nothing["error"]) == ["no response: curl stopped before this request"]


def test_an_empty_loop_has_the_columns() -> None:
    calls = parse_curl_output("", source="c", urls=[])
    assert calls.empty and list(calls.columns) == list(COLUMNS)
    assert calls.dtypes["status"] == "int64" and calls.dtypes["latency_ms"] == "float64"


def test_one_curl_command_line_carries_every_request() -> None:
    argv = curl_argv(_cycle(["http://a/", "http://b/"], 5))
    assert argv[0] == "curl" and "--fail" not in argv and "-f" not in argv and "--fail-early" not in argv
    assert "--globoff" in argv and argv[argv.index("--max-time") + 1] == "10"
    assert argv[argv.index("--") + 1:] == ["http://a/", "http://b/", "http://a/", "http://b/", "http://a/"]
    assert curl_argv(["http://a/"], request_timeout=None).count("--max-time") == 0


def test_sources_name_a_namespace_and_a_target() -> None:
    assert Source.parse("sample/deploy/sleep") == Source("sample", "deploy/sleep")
    assert Source.parse("sample/sleep-5d8f9c-abcde") == Source("sample", "sleep-5d8f9c-abcde")
    for bad in ("sleep", "sample/", "/deploy/sleep", "sample/deploy/"):
        with pytest.raises(ValueError, match="<namespace>/deploy/<name>"):
            Source.parse(bad)


def test_cycling_urls() -> None:
    assert _cycle("http://a/", 3) == ["http://a/"] * 3
    assert _cycle(["u1", "u2", "u3"], 2) == ["u1", "u2"]
    with pytest.raises(ValueError, match="at least one URL"):
        _cycle([], 3)
    with pytest.raises(ValueError, match="0 or more"):
        _cycle("http://a/", -1)


def test_frames_survive_concatenation_of_loops() -> None:
    first = parse_curl_output(GOLDEN, source="cluster1", urls=["u"] * 3)
    second = parse_curl_output(GOLDEN, source="cluster2", urls=["u"] * 3)
    both = pd.concat([first, second], ignore_index=True)
    assert list(both.groupby("source")["status"].apply(list)) == [[200, 0, 503], [200, 0, 503]]
