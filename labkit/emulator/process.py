"""The emulator process: N embedded clusters in one asyncio loop, until told to stop.

Run as ``python -m labkit.emulator --state-dir DIR --clusters cluster1,cluster2``. It writes
``DIR/kubeconfig`` (one context per cluster) and, once every API server answers, ``DIR/state.json``
(its pid, the clusters and their URLs): the launcher (:mod:`labkit.emulator.launching`) waits for that
file. SIGTERM or SIGINT stops every pod and proxy it started, then removes ``state.json``.

A process of its own, not a thread of the notebook kernel: a kernel restart must not kill the
clusters, and the official Kubernetes client blocks, so it cannot share a loop with them anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from labkit.core.contract import KUBECONFIG_FILE, STATE_FILE, AddressPlan
from labkit.emulator.cluster import Cluster
from labkit.emulator.network import separation
from labkit.emulator.network.addresses import IpPool, LoadBalancerPool, claim_block
from labkit.emulator.network.separation import Separation
from labkit.emulator.store.objects import DEFAULT_HISTORY

_log = logging.getLogger("labkit.emulator")


def kubeconfig(clusters: list[Cluster], current: str) -> dict[str, Any]:
    """A kubeconfig with one cluster, user and context per embedded cluster, all named alike."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "current-context": current,
        "clusters": [{"name": c.name, "cluster": {"server": c.url, "certificate-authority-data": c.ca_data}}
                     for c in clusters],
        "users": [{"name": c.name, "user": {"token": c.admin_token}} for c in clusters],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": c.name}} for c in clusters],
    }


def _write_private(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(temporary, path)


async def serve(state_dir: Path, names: list[str], block: int, watch_history: int = DEFAULT_HISTORY,
                networks: Separation | None = None) -> None:
    """Run the clusters until SIGTERM/SIGINT.

    Args:
        state_dir: where the kubeconfig, ``state.json`` and the clusters' files go.
        names: the clusters.
        block: the emulator's 127.X.0.0/16.
        watch_history: events each cluster keeps for resuming watches.
        networks: the separate networks made for the clusters (:func:`separation.separate`); ``None`` or off: every
            pod on the machine's loopback.
    """
    plan = AddressPlan(block)
    load_balancers = LoadBalancerPool(IpPool(plan.load_balancer_network(), what="load-balancer IP"))
    clusters = [Cluster(name, index, plan, state_dir / "clusters" / name, load_balancers, watch_history, networks)
                for index, name in enumerate(names, 1)]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = time.monotonic()
    try:
        for cluster in clusters:
            await cluster.start()
        _write_private(state_dir / KUBECONFIG_FILE, yaml.safe_dump(kubeconfig(clusters, names[0]), sort_keys=False))
        if networks is None:
            networks = separation.shared(separation.Layout.parse(plan, names), "started without separation")
        state = {"pid": os.getpid(), "block": block, "started": time.time(),
                 "clusters": {c.name: {"url": c.url, "index": c.index} for c in clusters},
                 "networks": networks.state()}
        _write_private(state_dir / STATE_FILE, json.dumps(state, indent=2))
        _log.info("ready: %s in %.2f s", ", ".join(names), time.monotonic() - started)
        await stop.wait()
    finally:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
        for cluster in reversed(clusters):
            with contextlib.suppress(Exception):
                await cluster.stop()
        _log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m labkit.emulator``."""
    parser = argparse.ArgumentParser(prog="python -m labkit.emulator")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--clusters", required=True)
    parser.add_argument("--block", type=int, default=None, help="second octet X of the 127.X.0.0/16 to use")
    parser.add_argument("--watch-history", type=int, default=DEFAULT_HISTORY,
                        help="events kept per cluster for watches resuming from a resourceVersion")
    parser.add_argument("--networks", default="",
                        help="clusters that share a physical network, as cluster1=east,cluster2=east "
                             "(by default each cluster is a network of its own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    names = [n for n in args.clusters.split(",") if n]
    with claim_block(args.block) as claim:  # held while the clusters run; the kernel frees it if we die
        layout = separation.Layout.parse(AddressPlan(claim.block), names, args.networks)
        networks = separation.separate(layout)  # before any thread or listener: see the module
        _log.info("networks: %s", networks.detail)
        try:
            asyncio.run(serve(args.state_dir, names, claim.block, args.watch_history, networks))
        finally:
            networks.close()
    return 0
