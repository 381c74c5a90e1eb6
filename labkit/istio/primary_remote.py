"""A primary-remote mesh in one call: what Istio's "primary-remote on different networks" guide does, step by step.

The primary runs the only istiod (``externalIstiod: true``), an east-west gateway, and exposes istiod through it
(``expose-istiod.yaml``: 15012 for xDS and certificates, 15017 for the injection webhook, both TLS passthrough).
The remote gets its ``istio-system`` labelled with its network and annotated with its control-plane cluster,
then the ``remote`` profile with ``remotePilotAddress`` set to the primary's east-west gateway address: an
``istiod`` Service without selector whose Endpoints are that address, and the injection webhook calling it.
The remote's remote secret goes into the primary, whose istiod then reads the remote's API server and
configures the remote's proxies. Lab 2 walks through these steps one cell at a time; tests and benchmarks
call :func:`install_primary_remote` instead. Works on real and embedded clusters alike.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

from labkit import kube
from labkit.istio.installing import install, load_operator
from labkit.istio.multicluster import plug_in_ca
from labkit.istio.remote_secrets import apply_remote_secret, create_remote_secret
from labkit.pki import KeySpec, make_mesh

MANIFESTS = Path(__file__).resolve().parents[2] / "manifests" / "primary-remote"
EASTWEST_GATEWAY = "istio-eastwestgateway"


def gateway_address(context: kube.ContextRef, *, timeout: float = 60.0, namespace: str = "istio-system") -> str:
    """The external address of a cluster's east-west gateway (``EXTERNAL-IP`` of ``istio-eastwestgateway``).

    Args:
        context: the cluster.
        timeout: seconds to wait for the load balancer to assign it.
        namespace: where the gateway runs.

    Raises:
        WaitTimeoutError: the Service has no address yet (``<pending>``, istio.md mistake 5).
    """
    def address() -> str:
        service = kube.get_object(context, "v1", "Service", EASTWEST_GATEWAY, namespace) or {}
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return str(ingress[0].get("ip") or ingress[0].get("hostname") or "") if ingress else ""

    return kube.poll(address, timeout=timeout, what=f"an external address for svc/{EASTWEST_GATEWAY} in {context}")


def remote_control_plane(discovery_address: str, *, manifests: Path = MANIFESTS) -> dict[str, Any]:
    """The remote's IstioOperator (``cluster2.yaml``) with ``remotePilotAddress`` (``${DISCOVERY_ADDRESS}``) filled in.

    Args:
        discovery_address: the primary's east-west gateway address.
        manifests: the folder holding ``cluster2.yaml``.
    """
    text = string.Template((manifests / "cluster2.yaml").read_text()).substitute(DISCOVERY_ADDRESS=discovery_address)
    operator, _ = load_operator(text)
    return operator


def install_primary_remote(primary: kube.ContextRef, remote: kube.ContextRef, certs: Path, *,
                           expose_istiod: bool = True, manifests: Path = MANIFESTS, key: KeySpec = "ec-p256",
                           timeout: float = 120.0) -> str:
    """Install ``manifests``' primary in ``primary`` and its remote in ``remote``; return the discovery address.

    The clusters must be named ``cluster1`` and ``cluster2`` (the names the manifests use).

    Args:
        primary: the primary's context.
        remote: the remote's context.
        certs: where the mesh root and the primary's intermediate CA are made (kept if present).
        expose_istiod: apply ``expose-istiod.yaml`` (without it the remote's proxies never reach istiod: the
            lab's negative case).
        manifests: the folder holding the lab's files.
        key: key kind of new CAs.
        timeout: seconds to wait for each installation to become ready.
    """
    make_mesh(certs, [str(primary)], key=key)
    plug_in_ca(primary, certs / str(primary), "network1")
    install(primary, manifests / "cluster1.yaml", quiet=True, timeout=timeout)
    install(primary, manifests / "eastwest-gateway-cluster1.yaml", quiet=True, timeout=timeout)
    if expose_istiod:
        kube.apply(primary, manifests / "expose-istiod.yaml")
    kube.apply(primary, manifests / "expose-services.yaml")
    address = gateway_address(primary, timeout=timeout)
    kube.apply(remote, manifests / "cluster2-namespace.yaml")
    install(remote, remote_control_plane(address, manifests=manifests), quiet=True, timeout=timeout)
    apply_remote_secret(create_remote_secret(remote, str(remote)), primary)
    install(remote, manifests / "eastwest-gateway-cluster2.yaml", quiet=True, timeout=timeout, wait=expose_istiod)
    kube.apply(remote, manifests / "expose-services.yaml")
    return address
