"""Networks that are separate: pods of one physical network cannot reach another network's pod IPs.

Istio's multi-network model exists because clusters on different networks cannot dial each other's pods: a
sidecar must go through the other network's east-west gateway. On one shared loopback every pod IP answers from
everywhere, so the most common mistake (a missing ``topology.istio.io/network`` label, after which sidecars dial
remote pod IPs directly) would *work*. Here each physical network is a Linux network namespace, and the wiring
gives what a real one gives:

* the emulator itself lives in a **node namespace** of its own, where its API servers, ClusterIPs, load balancers
  and cluster DNS listen, as a node's kube-proxy and the control plane do; the pods of network ``i`` live in
  network namespace ``i``, joined to the node namespace by a veth pair (``lk<i>`` on the node side, ``eth0`` in
  the network);
* inside a network, its clusters' pod CIDRs are local (pods of one network reach each other directly); every
  other 127.X address is routed to the node, which delivers what it serves (API servers, ClusterIPs of the
  network's own clusters, load-balancer addresses, which every network reaches as a cloud load balancer is
  reachable) and **silently drops** the rest: another network's pod or ClusterIP gets a connect *timeout*, the
  real symptom, not a refusal (``blackhole`` routes on the forwarding path send no ICMP);
* the node namespace reaches every pod, as a node reaches its pods, so the prober, port-forward, the service
  proxy's relays and admission webhooks work unchanged.

The machine (kubectl, the notebook's kernel, tests) stays in its own namespace. A small **host process**, forked
before the emulator leaves the machine's namespaces, makes sockets there on request and hands them over
(``SCM_RIGHTS``): a listener in the machine's namespace is the twin of each node listener a user reaches from the
machine (API servers, load balancers, ClusterIPs, cluster DNS), and a connecting socket from there serves the
emulator's calls to addresses outside its own block (a webhook served by a test on ``127.0.0.1``).

Without root this needs a user namespace, made first (the process must be single-threaded, which
:func:`separate` checks by being called before the event loop starts); the uid and gid map to themselves, so
files and pods keep their owner. Where the kernel refuses any step (no user or network namespaces, no veth) or
``LABKIT_NETWORKS=0``, every network shares the machine's loopback as before and :attr:`Separation.detail` says
why; ``labkit doctor`` and the labs' preflight show it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # this module runs as the host process's program too, which imports the standard library only
    from labkit.core.contract import AddressPlan

log = logging.getLogger(__name__)

ENABLE_VARIABLE = "LABKIT_NETWORKS"
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
LOCAL_TABLE = 255
FIRST_TABLE = 1000  # network i drops what it must not reach through table FIRST_TABLE + i
NETWORK_RULE_PRIORITY = 50  # before the local table, which moves to LOCAL_RULE_PRIORITY
LOCAL_RULE_PRIORITY = 100
SCOPE_LINK = 253
SCOPE_HOST = 254
INSIDE = "eth0"  # the network's end of its veth pair, as a pod's interface is named
GATEWAY = "169.254.0.1"  # the node's end of every network's veth pair
# A veth's largest MTU (loopback's is 65536): with Ethernet's 1500, bulk transfers across the veth ran at a quarter
# of loopback's speed; this network is a bridge inside one machine, not a wire.
MTU = 65535
RTNH_F_ONLINK = 4  # linux/rtnetlink.h: the next hop is on the link, though no route of the link covers it
MAX_MESSAGE = 4096

_libc: Any = None
if sys.platform == "linux":
    with contextlib.suppress(OSError, AttributeError):
        _libc = ctypes.CDLL(None, use_errno=True)
        for _name in ("unshare", "setns", "prctl"):
            getattr(_libc, _name)

T = TypeVar("T")


@dataclass(frozen=True)
class Layout:
    """Which embedded clusters share a physical network.

    By default every cluster is a network of its own, as clusters in different clouds or VPCs are (all five labs
    connect such clusters); clusters named together share one, as clusters of one VPC do.

    Args:
        plan: the emulator's address ranges.
        networks: per cluster (in the emulator's order, so cluster ``k`` is entry ``k - 1``), its network's name.
    """

    plan: AddressPlan
    networks: tuple[str, ...]

    @classmethod
    def parse(cls, plan: AddressPlan, clusters: Sequence[str], spec: str = "") -> Layout:
        """The layout of ``clusters`` from ``spec`` (``cluster1=east,cluster2=east``); unnamed clusters get their own.

        Raises:
            ValueError: ``spec`` names a cluster that does not exist or is not ``cluster=network``.
        """
        chosen: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            name, sep, network = item.partition("=")
            if not sep or not network or name not in clusters:
                raise ValueError(f"--networks: {item!r} is not <cluster>=<network> for one of {', '.join(clusters)}")
            chosen[name] = network
        return cls(plan, tuple(chosen.get(name, name) for name in clusters))

    @property
    def names(self) -> list[str]:
        """The networks, in the order their first cluster comes."""
        return list(dict.fromkeys(self.networks))

    def members(self, network: str) -> list[int]:
        """The 1-based indexes of the clusters on ``network``."""
        return [index for index, name in enumerate(self.networks, 1) if name == network]


class HostSockets:
    """Sockets of the machine's own network namespace, made by a process that stayed there.

    Args:
        process: the host process.
        channel: this side of its socket pair for sockets.
        lookups: this side of its socket pair for name lookups (served apart: a slow resolver must not hold a
            listener back).
    """

    def __init__(self, process: subprocess.Popen[bytes], channel: socket.socket, lookups: socket.socket):
        self.process = process
        self._channel = channel
        self._lookups = lookups
        self._lock = threading.Lock()
        self._lookup_lock = threading.Lock()

    def lookup(self, name: str, family: int) -> list[str]:
        """``getaddrinfo`` as the machine answers it (its resolver, ``/etc/hosts``): the cluster DNS forwards
        names outside the cluster here.

        Raises:
            socket.gaierror: as ``getaddrinfo`` raised it there.
        """
        reply = self._ask_lookup({"name": name, "family": int(family)})
        if "gaierror" in reply:
            raise socket.gaierror(reply["gaierror"], reply.get("error", ""))
        return list(reply["addresses"])

    def reverse(self, address: str) -> str | None:
        """``gethostbyaddr`` as the machine answers it, or ``None``."""
        return self._ask_lookup({"address": address}).get("name")

    def _ask_lookup(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lookup_lock:
            self._lookups.send(json.dumps(request).encode())
            message = self._lookups.recv(MAX_MESSAGE * 4)
        if not message:
            raise socket.gaierror(socket.EAI_AGAIN, "the host socket process is gone")
        return json.loads(message)

    def listener(self, host: str, port: int, *, udp: bool = False) -> socket.socket:
        """A socket bound to ``host:port`` in the machine's namespace (listening, for TCP).

        Raises:
            OSError: the machine refused the bind (the address is taken, the port is privileged).
        """
        return self._ask({"op": "bind", "host": host, "port": port, "udp": udp})

    def connector(self) -> socket.socket:
        """An unbound TCP socket of the machine's namespace, to connect to an address outside the emulator's."""
        return self._ask({"op": "socket", "udp": False})

    def _ask(self, request: dict[str, Any]) -> socket.socket:
        with self._lock:
            self._channel.send(json.dumps(request).encode())
            message, fds, _flags, _address = socket.recv_fds(self._channel, MAX_MESSAGE, 1)
        if not message:
            raise OSError(errno.EPIPE, "the host socket process is gone")
        reply = json.loads(message)
        if not fds:
            raise OSError(reply.get("errno") or errno.EIO, reply.get("error") or "no socket")
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        return sock

    def close(self) -> None:
        """Stop the host process (it exits when its channel closes)."""
        self._lookups.close()
        self._channel.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Separation:
    """The emulator's networks, once made (or why they are not).

    Args:
        layout: which clusters share a network.
        namespaces: an open file descriptor of each network's namespace, by network name; empty when off.
        host: the machine's sockets; ``None`` when off (the emulator then is on the machine's network).
        detail: what is separated, or why nothing is.
    """

    layout: Layout
    namespaces: dict[str, int]
    host: HostSockets | None
    detail: str

    @property
    def enabled(self) -> bool:
        """Whether pods of different networks are really apart."""
        return self.host is not None

    def namespace(self, cluster_index: int) -> int:
        """The namespace file descriptor pods of cluster ``cluster_index`` join, or -1 when off."""
        if not self.enabled:
            return -1
        return self.namespaces[self.layout.networks[cluster_index - 1]]

    def state(self) -> dict[str, Any]:
        """What ``state.json`` records: on or off, why, and each cluster's network."""
        return {"separate": self.enabled, "detail": self.detail, "networks": list(self.layout.networks)}

    def close(self) -> None:
        """Let go of the namespaces and stop the host process."""
        for fd in self.namespaces.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self.namespaces = {}
        if self.host is not None:
            self.host.close()
            self.host = None


def switched_on(environ: Mapping[str, str] | None = None) -> bool:
    """Whether separation is wanted: on Linux, unless ``LABKIT_NETWORKS=0``."""
    environ = os.environ if environ is None else environ
    return sys.platform == "linux" and environ.get(ENABLE_VARIABLE, "1") not in ("0", "off", "false", "no")


def shared(layout: Layout, why: str) -> Separation:
    """A separation that is off: every network on the machine's loopback, ``why`` saying so."""
    return Separation(layout, {}, None, f"{why}: pods of every network reach each other's pod IPs")


def separate(layout: Layout, environ: Mapping[str, str] | None = None) -> Separation:
    """Put this process in a node namespace and make one namespace per network (see the module's docstring).

    Call it in a single-threaded process, before anything listens: a user namespace needs that, and listeners
    made before stay in the machine's namespace.

    Args:
        layout: which clusters share a network.
        environ: the environment to read; this process's by default.
    """
    if not switched_on(environ):
        return shared(layout, f"{ENABLE_VARIABLE}=0" if sys.platform == "linux" else "not Linux")
    if _libc is None:
        return shared(layout, "no C library to call unshare/setns")
    try:
        from pyroute2 import IPRoute  # noqa: F401, PLC0415 - Linux only, and only the emulator needs it
    except ImportError:
        return shared(layout, "pyroute2 is not installed")
    if threading.active_count() > 1:
        return shared(layout, "the emulator already runs threads (a user namespace needs a single thread)")
    host = _start_host_process()
    namespaces: dict[str, int] = {}
    try:
        if os.geteuid() != 0:
            uid, gid = os.getuid(), os.getgid()
            _check(_libc.unshare(CLONE_NEWUSER), "unshare(CLONE_NEWUSER)")
            _write("/proc/self/setgroups", "deny")
            _write("/proc/self/uid_map", f"{uid} {uid} 1")
            _write("/proc/self/gid_map", f"{gid} {gid} 1")
        _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        for network in layout.names:
            namespaces[network] = _in_thread(_new_namespace)
        _wire(layout, namespaces)
    except (OSError, ValueError) as exc:
        # The user and node namespaces cannot be left again; what remains is a node namespace that reaches only
        # itself, so the emulator must not go on as if nothing happened.
        for fd in namespaces.values():
            os.close(fd)
        host.close()
        raise NetworkSetupError(f"cannot make the emulator's networks: {exc}; "
                                f"start it with {ENABLE_VARIABLE}=0 to share the machine's loopback") from exc
    how = "user+network" if os.geteuid() != 0 or os.getuid() != 0 else "network"
    groups = ", ".join(f"{name} ({', '.join(f'#{i}' for i in layout.members(name))})" for name in layout.names)
    return Separation(layout, namespaces, host,
                      f"{how} namespaces: one per network, {groups}; other networks' pod IPs time out")


class NetworkSetupError(OSError):
    """A step of making the networks failed after the emulator had left the machine's namespaces."""


def probe() -> str:
    """Why separation cannot work here, or ``""``: a child tries the namespaces and a veth pair."""
    if not switched_on():
        return f"{ENABLE_VARIABLE}=0" if sys.platform == "linux" else "not Linux"
    if _libc is None:
        return "no C library"
    try:
        import pyroute2  # noqa: F401, PLC0415
    except ImportError:
        return "pyroute2 is not installed"
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        reason = ""
        try:
            if os.geteuid() != 0:
                _check(_libc.unshare(CLONE_NEWUSER), "user namespaces")
            _check(_libc.unshare(CLONE_NEWNET), "network namespaces")
            from pyroute2 import IPRoute  # noqa: PLC0415

            with IPRoute() as ipr:
                ipr.link("add", ifname="lk0", kind="veth", peer="lk0p")
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
        os.write(write, reason.encode()[:500])
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        reason = reader.read().decode()
    os.waitpid(pid, 0)
    return reason


def describe() -> tuple[str, str]:
    """``(state, detail)`` for ``labkit doctor``: whether embedded clusters get separate networks here."""
    reason = probe()
    if reason:
        return "off", f"{reason}: pods of every network reach each other's pod IPs"
    return "on", "a network namespace per network; another network's pod IPs time out, load balancers answer"


# -- making the namespaces ---------------------------------------------------------------------------------------

def _check(result: int, step: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{step}: {os.strerror(number)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def _in_thread(work: Callable[[], T]) -> T:
    """Run ``work`` in a thread of its own: namespaces it enters stay with that thread, which then ends."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="labkit-networks")
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _new_namespace() -> int:
    _check(_libc.unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET) for a network")
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def enter(namespace: int) -> None:
    """Join the network namespace ``namespace`` (a pod's process, between fork and exec; or a worker thread)."""
    _check(_libc.setns(namespace, CLONE_NEWNET), "setns(network)")


def _sysctl(name: str, value: str) -> None:
    _write(f"/proc/sys/net/{name}", value)


def _wire(layout: Layout, namespaces: dict[str, int]) -> None:
    from pyroute2 import IPRoute  # noqa: PLC0415

    plan = layout.plan
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        _sysctl("ipv4/conf/all/route_localnet", "1")
        _sysctl("ipv4/ip_forward", "1")
        for number, network in enumerate(layout.names, 1):
            outside = f"lk{number}"
            ipr.link("add", ifname=outside, kind="veth", peer={"ifname": INSIDE, "net_ns_fd": namespaces[network]})
            index = ipr.link_lookup(ifname=outside)[0]
            ipr.link("set", index=index, state="up", mtu=MTU)
            # The network's next hop for everything it does not hold: ARP resolves this address only, so a packet
            # for another network's pod reaches the node and is dropped there in silence (asked directly, nobody
            # would answer the ARP, and the caller would get "No route to host" instead of a timeout).
            ipr.addr("add", index=index, address=GATEWAY, prefixlen=32)
            members = layout.members(network)
            for cluster in members:
                # The network's pods are behind its veth; its API servers are the node's own.
                # The cluster's node IP (its API server's) is the node's own, and the source of what the node
                # sends its pods (probes, relays): the pods' replies find their way back to it.
                node_ip = plan.api_server_address(cluster)
                ipr.addr("add", index=lo, address=node_ip, prefixlen=32)
                ipr.route("add", dst=str(plan.pod_network(cluster)), oif=index, table=LOCAL_TABLE, scope=SCOPE_LINK,
                          prefsrc=node_ip)
            table = FIRST_TABLE + number
            for cluster in range(1, len(layout.networks) + 1):
                if cluster in members:
                    continue
                # What this network must not reach: the other networks' pods and ClusterIPs (their API servers
                # stay reachable, as a managed control plane's endpoint is).
                for cidr in (plan.pod_network(cluster), plan.service_network(cluster)):
                    ipr.route("add", dst=str(cidr), table=table, type="blackhole")
                ipr.route("add", dst=f"{plan.api_server_address(cluster)}/32", table=table, type="throw")
            ipr.rule("add", iifname=outside, table=table, priority=NETWORK_RULE_PRIORITY)
            _in_thread(lambda network=network, members=members: _wire_inside(plan, namespaces[network], members))
        ipr.rule("add", table=LOCAL_TABLE, priority=LOCAL_RULE_PRIORITY)
        ipr.rule("del", table=LOCAL_TABLE, priority=0)


def _wire_inside(plan: AddressPlan, namespace: int, members: list[int]) -> None:
    from pyroute2 import IPRoute  # noqa: PLC0415

    enter(namespace)
    _sysctl("ipv4/conf/all/route_localnet", "1")
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        eth0 = ipr.link_lookup(ifname=INSIDE)[0]
        ipr.link("set", index=eth0, state="up", mtu=MTU)
        # Only this network's pod CIDRs are local (127.0.0.1 stays: its own route); the rest goes to the node.
        # A socket that binds no address leaves with the network's own (a container's would leave with its pod IP,
        # its only one; pods here share the namespace), which the node routes back here.
        source = source_address(plan, members[0])
        ipr.route("del", dst="127.0.0.0/8", table=LOCAL_TABLE, type="local", oif=lo, scope=SCOPE_HOST)
        for cluster in members:
            ipr.route("add", dst=str(plan.pod_network(cluster)), oif=lo, table=LOCAL_TABLE, type="local",
                      scope=SCOPE_HOST)
            ipr.route("add", dst=f"{plan.api_server_address(cluster)}/32", oif=eth0, table=LOCAL_TABLE,
                      gateway=GATEWAY, flags=RTNH_F_ONLINK, prefsrc=source)
        ipr.route("add", dst="127.0.0.0/8", oif=eth0, gateway=GATEWAY, flags=RTNH_F_ONLINK, prefsrc=source)


# -- the host process --------------------------------------------------------------------------------------------

def _start_host_process() -> HostSockets:
    """Start this module as the host process: a fresh, isolated interpreter (the standard library only, ~10 MB),
    rather than a fork that would keep a copy of every page the emulator touches afterwards."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    our_lookups, their_lookups = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", __file__, str(os.getpid()), str(theirs.fileno()),
             str(their_lookups.fileno())],
            pass_fds=(theirs.fileno(), their_lookups.fileno()), stdin=subprocess.DEVNULL)
    finally:
        theirs.close()
        their_lookups.close()
    return HostSockets(process, ours, our_lookups)


def _host_main() -> None:  # pragma: no cover - runs in the host process
    """``python -I -S separation.py <parent pid> <socket fd> <lookup fd>``: serve until the emulator goes."""
    parent, channel, lookups = (int(argument) for argument in sys.argv[1:4])
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the emulator died before the signal was armed
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's ^C is the emulator's to handle
    threading.Thread(target=_serve_lookups, args=(socket.socket(fileno=lookups),), daemon=True).start()
    _serve_host(socket.socket(fileno=channel))


def resolve(name: str, family: int) -> list[str]:
    """The addresses of ``name`` as this process's resolver gives them (``getaddrinfo``, ``/etc/hosts``).

    Raises:
        socket.gaierror: the name has none of ``family``, or the resolver failed.
    """
    infos = socket.getaddrinfo(name.rstrip("."), None, family, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve_address(address: str) -> str | None:
    """The name of ``address`` as this process's resolver gives it, or ``None``."""
    try:
        return socket.gethostbyaddr(address)[0]
    except OSError:
        return None


def _requests(channel: socket.socket) -> Iterator[dict[str, Any]]:  # pragma: no cover - runs in the host process
    """The requests arriving on ``channel``, until the emulator closes it."""
    while True:
        try:
            data = channel.recv(MAX_MESSAGE)
        except InterruptedError:
            continue
        if not data:
            return
        yield json.loads(data)


def _serve_lookups(channel: socket.socket) -> None:  # pragma: no cover - runs in the host process
    for request in _requests(channel):
        reply: dict[str, Any]
        if "address" in request:
            reply = {"name": resolve_address(request["address"])}
        else:
            try:
                reply = {"addresses": resolve(request["name"], request["family"])}
            except socket.gaierror as exc:
                reply = {"gaierror": exc.errno, "error": exc.strerror or str(exc)}
            except (OSError, UnicodeError) as exc:
                reply = {"gaierror": socket.EAI_FAIL, "error": str(exc)}
        channel.send(json.dumps(reply).encode())


def _serve_host(channel: socket.socket) -> None:  # pragma: no cover - runs in the host process
    for request in _requests(channel):
        sock = None
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if request["udp"] else socket.SOCK_STREAM)
            if request["op"] == "bind":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((request["host"], request["port"]))
                if not request["udp"]:
                    sock.listen(512)
            socket.send_fds(channel, [b"{}"], [sock.fileno()])
        except OSError as exc:
            channel.send(json.dumps({"errno": exc.errno or errno.EIO, "error": exc.strerror or str(exc)}).encode())
        finally:
            if sock is not None:
                sock.close()


def source_address(plan: AddressPlan, cluster_index: int) -> str:
    """The pod IP that connections from a network leave with when they bind none (``.254`` of the network's first
    cluster's pod CIDR, which the node never gives a pod)."""
    return str(plan.pod_network(cluster_index).network_address + 254)


def is_ours(plan: AddressPlan, host: str) -> bool:
    """Whether ``host`` is an address of the emulator's block (else it lives on the machine)."""
    try:
        return ipaddress.IPv4Address(host) in ipaddress.IPv4Network(f"127.{plan.block}.0.0/16")
    except ValueError:
        return False


if __name__ == "__main__":
    _host_main()
