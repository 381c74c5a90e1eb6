"""`make lab` really opens the workshop: JupyterLab serves the notebooks folder on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest

from labkit.testing import eventually

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_make_lab_prints_a_url_that_opens_the_workshop(tmp_path: Path) -> None:
    port = _free_port()
    env = dict(os.environ, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               WORKSHOP=str(tmp_path / "workshop"))  # the working copies, here not in the checkout
    log = tmp_path / "make-lab.log"
    with log.open("w") as out:
        process = subprocess.Popen(["make", "-s", "lab", f"JUPYTER_ARGS=--no-browser --port={port}"], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # Do what a user does: wait for the URL to be printed, then open it.
        pattern = re.compile(rf"http://127\.0\.0\.1:{port}/lab\?token=[0-9a-f]+")

        def printed() -> re.Match[str] | None:
            assert process.poll() is None, log.read_text()
            return pattern.search(log.read_text())

        url = eventually(printed, 90, "JupyterLab's URL in the output of make lab").group(0)

        def opened() -> str:
            # As a browser would be retried: the URL can be printed a moment before the server accepts (seen once
            # under a loaded CI run); a server that died stays refused, and the failure then shows make's output.
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    return response.read().decode()
            except OSError:
                return ""

        assert "JupyterLab" in eventually(opened, 15, f"JupyterLab answering at {url}")
        contents = url.replace("/lab?", "/api/contents?")
        with urllib.request.urlopen(contents, timeout=10) as response:
            listing = json.loads(response.read())
        assert "README.md" in {item["name"] for item in listing["content"]}  # notebooks/README.md
        assert "Point your browser at" in log.read_text()
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop make and JupyterLab under it (they share a process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
