"""The contract between labkit's client side and its embedded clusters: what both must agree on.

The client reaches embedded clusters only through the Kubernetes API (DESIGN decision 1), but a few facts are
shared by construction: the sidecar's HTTP proxy port that replaces iptables (decision 5), the annotations a
manifest uses to ask the embedded load balancer for an address, the add-on API group of packet captures, the
names of the files an emulator leaves in its state folder, and the plan of loopback addresses (decision 4).
Each is written here once; neither side spells them itself.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

# --- the mesh without iptables (DESIGN decision 5) ------------------------------------------------------------------

PROXY_HTTP_PORT = 15080
"""meshConfig.defaultConfig.proxyHttpPort: the sidecar's HTTP proxy listener that app containers use as their
``HTTP_PROXY`` on embedded clusters, where no iptables rule redirects their traffic."""

APP_ADDRESS_ANNOTATION = "labkit.io/app-address"
"""On an injected pod: the address its application listens on, behind the sidecar's inbound listener. Written
by the injector, so the pod object alone says how to reach the app."""

SIDECAR_ANNOTATION = "labkit.io/sidecar"
"""On an injected pod: what the embedded node must know of its sidecar, as JSON, so the node knows no mesh —
``{"container": "istio-proxy", "httpProxyPort": 15080, "podIPPorts": [15020, 15021, 15090]}``: the proxy
container (it keeps the pod IP; the apps get an address of their own), its HTTP proxy listener (the other
containers' ``http_proxy``) and the ports it serves on the pod IP (probes aimed there go to the pod IP)."""

# --- load balancers ------------------------------------------------------------------------------------------------

LOAD_BALANCER_IP_ANNOTATION = "labkit.io/load-balancer-ip"
"""On a ``type: LoadBalancer`` Service: the external address asked for (a cloud's static IP); ``spec.loadBalancerIP``
is honoured too."""

# --- add-on APIs of embedded clusters ------------------------------------------------------------------------------

LABKIT_GROUP = "labkit.io"
CAPTURE_API_VERSION = "labkit.io/v1"
CAPTURE_KIND = "PacketCapture"
"""A capture at a Service's load balancer: create one naming the Service, read the bytes from its status."""

# --- an emulator's state folder ------------------------------------------------------------------------------------

STATE_FILE = "state.json"
KUBECONFIG_FILE = "kubeconfig"
LOG_FILE = "emulator.log"
PID_FILE = "emulator.pid"

# --- istiod ---------------------------------------------------------------------------------------------------------

ISTIOD_CA_PROBLEM = "cannot use the CA in istio-system:"
"""How istiod's log line starts when the plugged-in ``cacerts`` is unusable; istiod then stays not Ready, and
``labkit.istio.install`` quotes the line instead of waiting out its timeout."""

# --- addresses (DESIGN decision 4) ---------------------------------------------------------------------------------

MAX_CLUSTERS = 99


@dataclass(frozen=True)
class AddressPlan:
    """The address ranges of one emulator.

    On Linux the whole of 127.0.0.0/8 answers on ``lo`` with no configuration, so every pod, Service
    and load balancer of an embedded cluster gets an address of its own and binds the ports a real one
    would (helloworld on ``<pod IP>:5000``, the east-west gateway on ``<LB IP>:15443``). Addresses then
    mean what they mean on a real cluster, and Envoy configs and ``kubectl get`` output read naturally.

    One emulator takes one ``127.X.0.0/16`` (``X`` = :attr:`AddressPlan.block`), so two emulators (a
    trainer's and a test run) never collide. Inside it, cluster ``k`` (1-based) gets::

        127.X.k.0/24          pods         (.1 is the cluster's API server)
        127.X.(100+k).0/24    Services     (.1 is ``kubernetes``, .10 is ``kube-dns``, as 10.96.0.1/.10)
        127.X.200.0/24        load balancers, shared by all clusters, as a cloud's address pool is

    Args:
        block: the second octet ``X`` of the emulator's ``127.X.0.0/16``.
    """

    block: int

    def __post_init__(self) -> None:
        if not 1 <= self.block <= 254:
            raise ValueError(f"address block must be 1..254, got {self.block}")

    def pod_network(self, cluster_index: int) -> ipaddress.IPv4Network:
        """Pod IPs of cluster ``cluster_index`` (1-based)."""
        return ipaddress.IPv4Network(f"127.{self.block}.{_check(cluster_index)}.0/24")

    def service_network(self, cluster_index: int) -> ipaddress.IPv4Network:
        """ClusterIPs of cluster ``cluster_index`` (1-based)."""
        return ipaddress.IPv4Network(f"127.{self.block}.{100 + _check(cluster_index)}.0/24")

    def load_balancer_network(self) -> ipaddress.IPv4Network:
        """External (LoadBalancer) IPs, one pool for the whole emulator."""
        return ipaddress.IPv4Network(f"127.{self.block}.200.0/24")

    def api_server_address(self, cluster_index: int) -> str:
        """Where cluster ``cluster_index``'s API server listens."""
        return str(self.pod_network(cluster_index).network_address + 1)

    def kubernetes_service_ip(self, cluster_index: int) -> str:
        """The ClusterIP of ``default/kubernetes``."""
        return str(self.service_network(cluster_index).network_address + 1)

    def dns_service_ip(self, cluster_index: int) -> str:
        """The ClusterIP of ``kube-system/kube-dns``."""
        return str(self.service_network(cluster_index).network_address + 10)


def _check(cluster_index: int) -> int:
    if not 1 <= cluster_index <= MAX_CLUSTERS:
        raise ValueError(f"cluster index must be 1..{MAX_CLUSTERS}, got {cluster_index}")
    return cluster_index
