"""Fixtures for the envoy tests; the helpers live in ``envoy_kit`` (test modules import them by name)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# --import-mode=importlib puts no test folder on sys.path; this one's helpers are imported as ``envoy_kit``.
sys.path.insert(0, str(Path(__file__).parent))

from envoy_kit import Agent, StandInIstiod, pod_ips, running_agent, wait_ready


@pytest.fixture
def istiod() -> Iterator[StandInIstiod]:
    with StandInIstiod(pod_ips(10)[-1]) as serving:
        yield serving


@pytest.fixture
def agent(tmp_path: Path, istiod: StandInIstiod) -> Iterator[Agent]:
    with running_agent(tmp_path / "pod", pod_ips(1)[0], tmp_path / "istio-proxy.log", istiod=istiod) as started:
        wait_ready(started)
        yield started
