"""What labkit's tests share, public so that a lab's own tests can use it too.

Two things every test of a running mesh needs:

- :func:`eventually`: wait for a condition with a deadline, never a bare sleep. A mesh converges (a remote
  secret is read, an Envoy learns an endpoint, a gateway gets its address) and a test must wait for exactly
  that, failing with the last thing it saw. It is :func:`labkit.kube.poll` turned into a test failure.
- :func:`running_emulator` and :func:`running_lab`: embedded clusters started the way users start them (a
  process of their own), in a private state folder and an address block no other emulator holds, so a
  trainer's running clusters are never touched, with ``KUBECONFIG`` pointing at them while they run and
  everything stopped afterwards. A pytest fixture is one ``with`` around a ``yield``::

      @pytest.fixture(scope="module")
      def mesh(tmp_path_factory):
          with running_emulator(("cluster1", "cluster2"), tmp_path_factory.mktemp("mesh")) as emulator:
              yield emulator

Tests that run parts of the emulator in their own process (a node runtime, a service proxy, a few Envoys) take
their addresses from :func:`address_plan`, a block claimed for the test process alone.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from labkit.core.contract import AddressPlan
from labkit.emulator import launching
from labkit.emulator.network.addresses import BlockClaim, claim_block
from labkit.errors import WaitTimeoutError
from labkit.kube import forget_clients, poll

if TYPE_CHECKING:
    from labkit.lab import Lab

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 30.0, what: str = "condition", *,
               interval: float = 0.1, max_interval: float = 0.5) -> T:
    """``check()``'s first truthy value, polled with a deadline; an assertion failure naming ``what`` otherwise.

    Args:
        check: the condition; it may assert, and an AssertionError it raises fails the test at once.
        timeout: seconds before failing.
        what: what is awaited, for the failure message.
        interval: seconds before the second attempt (doubling up to ``max_interval``).
        max_interval: the longest pause between attempts.

    Raises:
        AssertionError: still falsy at the deadline; the message shows the last value.
    """
    try:
        return poll(check, timeout=timeout, what=what, interval=interval, max_interval=max_interval)
    except WaitTimeoutError as exc:
        raise AssertionError(str(exc)) from None


@contextlib.contextmanager
def running_emulator(clusters: Sequence[str], state_dir: Path, *, block: int | None = None,
                     watch_history: int | None = None, export: bool = True,
                     networks: str = "") -> Iterator[launching.Emulator]:
    """Embedded clusters for the length of a ``with``: ``KUBECONFIG`` names them inside, and all stop after.

    Args:
        clusters: the cluster names.
        state_dir: a private state folder (``tmp_path_factory.mktemp(…)``).
        block: the ``127.X.0.0/16`` block; by default one that no other emulator holds.
        watch_history: how many events the API servers keep for watches (small: to test expiry).
        export: point ``KUBECONFIG`` at the clusters inside the ``with``; off for a session-wide fixture whose
            tests pass the kubeconfig explicitly (other test modules of the session then see no change).
        networks: clusters sharing a physical network (``cluster1=east,cluster2=east``); each its own by default.
    """
    emulator = launching.up(clusters, state_dir, block=block, watch_history=watch_history, networks=networks)
    saved = os.environ.get("KUBECONFIG")
    if export:
        os.environ["KUBECONFIG"] = str(emulator.kubeconfig)
    try:
        yield emulator
    finally:
        launching.down(state_dir)
        _forget_clients()
        if export:
            _restore_kubeconfig(saved)


def address_plan() -> AddressPlan:
    """Loopback ranges of a block of its own, for parts of the emulator run inside the test process.

    Each call claims another block (as an emulator claims its own, see
    :func:`labkit.emulator.network.addresses.claim_block`) and holds it until the process ends, so pods and
    proxies one test starts never take the addresses of another test's, nor of an emulator running beside them.
    """
    claim = claim_block()
    _claims.append(claim)
    return claim.plan


_claims: list[BlockClaim] = []  # held for the life of the process; the kernel frees them when it ends


@contextlib.contextmanager
def running_lab(name: str, clusters: Sequence[str], state_dir: Path,
                networks: Mapping[str, str] | None = None) -> Iterator[Lab]:
    """A :class:`~labkit.lab.Lab` on its own embedded clusters for the length of a ``with``.

    Args:
        name: the lab's name (its manifests folder).
        clusters: the cluster names.
        state_dir: a private state folder.
        networks: the physical network of clusters that share one; each its own by default.
    """
    from labkit.lab import Lab  # noqa: PLC0415 - pandas and the charts only for tests that need a Lab

    saved = os.environ.get("KUBECONFIG")
    lab = Lab(name, clusters, state_dir=state_dir, networks=networks)
    try:
        yield lab
    finally:
        lab.cleanup()
        _forget_clients()
        _restore_kubeconfig(saved)


def _forget_clients() -> None:
    # The contexts' names outlive these clusters; their cached clients must not. The official client leaves
    # pooled sockets to the garbage collector: collect now, inside the test that used them, not at exit.
    forget_clients()
    gc.collect()


def _restore_kubeconfig(saved: str | None) -> None:
    if saved is None:
        os.environ.pop("KUBECONFIG", None)
    else:
        os.environ["KUBECONFIG"] = saved
