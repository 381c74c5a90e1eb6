"""Lab 5's steps and readings: two trust domains (foo.com, bar.com) federated by SPIRE under one Istio mesh.

Each cluster runs its own SPIRE server and agent; workload identities come from SPIRE, not istiod, and the two
domains trust each other only because their servers exchanged SPIFFE bundles. The steps a notebook cell calls:

- :func:`bundle_endpoints`, :func:`install_spire`, :func:`exchange_bundles`: SPIRE per cluster, its bundle endpoint
  behind a LoadBalancer first (the other server's ``federates_with`` needs that address), then the first bundles
  handed over by ``spire-server bundle set`` (later ones are fetched over ``https_spiffe``);
- :func:`deploy_apps`: helloworld v1 in cluster1, v2 in cluster2, sleep in both, each asking for the other domain's
  bundle;
- :func:`spire_server`: the ``spire-server`` CLI in the server's pod (``kubectl exec … -- spire-server …``);
- :func:`remove_bundle`, :func:`restore_bundle`: take a federated bundle away and give it back;
  :func:`set_trust_domain_aliases`: which other trust domains the mesh accepts as its own in server names.

And what a learner reads off the lab: :func:`versions` and :func:`outcome` of a calls table, :func:`resolved` (what
``nslookup`` answered), :func:`sds_certificates` (``istioctl proxy-config secret``), :func:`identity` (the SAN and
issuer of a sidecar's SVID), :func:`tls_failures` (the transport failure reason of an access log).

Everything goes through the lab's cluster handles, so real clusters take the same calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
import yaml

from labkit import istio, kube, pki, traffic
from labkit.errors import LabkitError
from labkit.istio.proxy_config import parse_proxy

if TYPE_CHECKING:
    from labkit.cluster import Cluster
    from labkit.lab import Lab

TRUST_DOMAINS = {"cluster1": "foo.com", "cluster2": "bar.com"}
# The names the article's SPIRE knows the clusters by (they appear in agent and registrar IDs).
SPIRE_CLUSTERS = {"cluster1": "cluster-1", "cluster2": "cluster-2"}
SPIRE_SERVER = "spire/spire-server-0"
BUNDLE_ENDPOINT = "spire-server-bundle-endpoint"
BUNDLE_PORT = 8443


def trust_domain(cluster: Cluster | str) -> str:
    """The trust domain of a lab cluster (``foo.com`` for cluster1, ``bar.com`` for cluster2)."""
    name = cluster if isinstance(cluster, str) else cluster.name
    try:
        return TRUST_DOMAINS[name]
    except KeyError:
        raise LabkitError(f"cluster {name!r} has no trust domain in Lab 5; its clusters are "
                          f"{', '.join(TRUST_DOMAINS)}") from None


def peer(lab: Lab, cluster: Cluster) -> Cluster:
    """The other cluster of the lab's two."""
    (other,) = [c for c in lab if c.name != cluster.name]
    return other


def spire_server(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    """``kubectl exec -n spire spire-server-0 -c spire-server -- spire-server <args>``: what it prints.

    Args:
        cluster: where the server runs.
        args: the CLI's arguments (``"entry", "show", "-spiffeID", …``).
        stdin: text for its standard input (``bundle set`` reads the bundle there).
    """
    return cluster.exec(SPIRE_SERVER, ["spire-server", *args], container="spire-server", stdin=stdin)


# --- SPIRE, per cluster ------------------------------------------------------------------------------------------

def bundle_endpoints(lab: Lab, *, timeout: float = 60.0) -> dict[str, str]:
    """Apply each cluster's bundle endpoint (a LoadBalancer Service) and wait for its address: ``{cluster: url}``.

    Args:
        lab: the lab.
        timeout: seconds to wait for the addresses.
    """
    for cluster in lab:
        cluster.apply("spire-bundle-endpoint.yaml")
    urls = {}
    for cluster in lab:
        address = kube.poll(lambda c=cluster: c.gateway_address(BUNDLE_ENDPOINT, "spire") or None, timeout=timeout,
                            what=f"the external address of spire/{BUNDLE_ENDPOINT} in {cluster.name}")
        urls[cluster.name] = f"https://{address}:{BUNDLE_PORT}"
    return urls


def install_spire(lab: Lab, urls: Mapping[str, str]) -> None:
    """SPIRE in every cluster: its own trust domain, federating with the other's bundle endpoint; waits until the
    server and the agent are ready.

    Args:
        lab: the lab.
        urls: each cluster's bundle endpoint URL (:func:`bundle_endpoints`).
    """
    for cluster in lab:
        other = peer(lab, cluster)
        cluster.apply("spire.yaml", values={"TRUST_DOMAIN": trust_domain(cluster),
                                            "CLUSTER": SPIRE_CLUSTERS[cluster.name],
                                            "PEER_DOMAIN": trust_domain(other),
                                            "PEER_BUNDLE_ENDPOINT": urls[other.name]})
    for cluster in lab:
        cluster.wait("spire", ["statefulset/spire-server", "daemonset/spire-agent"])


def exchange_bundles(lab: Lab) -> dict[str, str]:
    """The first bundle exchange, by hand, as ``https_spiffe`` requires: each server's ``bundle show -format
    spiffe`` fed to the other's ``bundle set``. What each ``bundle set`` printed, per cluster."""
    said = {}
    for cluster in lab:
        other = peer(lab, cluster)
        bundle = spire_server(other, "bundle", "show", "-format", "spiffe")
        said[cluster.name] = spire_server(cluster, "bundle", "set", "-format", "spiffe", "-id",
                                          f"spiffe://{trust_domain(other)}", stdin=bundle).strip()
    return said


def remove_bundle(cluster: Cluster, domain: str) -> str:
    """``spire-server bundle delete -id spiffe://<domain> -mode dissociate``: the server forgets a federated domain's
    bundle; its workloads' trust stores lose it at the next sync."""
    return spire_server(cluster, "bundle", "delete", "-id", f"spiffe://{domain}", "-mode", "dissociate").strip()


def restore_bundle(cluster: Cluster, source: Cluster) -> str:
    """Give ``cluster``'s server ``source``'s bundle again (``bundle show`` there, ``bundle set`` here)."""
    bundle = spire_server(source, "bundle", "show", "-format", "spiffe")
    return spire_server(cluster, "bundle", "set", "-format", "spiffe", "-id", f"spiffe://{trust_domain(source)}",
                        stdin=bundle).strip()


def set_trust_domain_aliases(cluster: Cluster, aliases: list[str]) -> list[str]:
    """Set ``meshConfig.trustDomainAliases`` in the cluster's ``istio`` ConfigMap (what an install with other aliases
    writes); istiod rebuilds every sidecar's server-name checks from it. Returns the aliases it had before.

    Raises:
        LabkitError: the cluster has no ``istio`` ConfigMap in ``istio-system`` (Istio is not installed there).
    """
    configmap = cluster.object("v1", "ConfigMap", "istio", "istio-system")
    if configmap is None:
        raise LabkitError(f"{cluster}: no ConfigMap istio in istio-system to hold meshConfig; install Istio first")
    mesh = yaml.safe_load((configmap.get("data") or {}).get("mesh") or "") or {}
    before = list(mesh.get("trustDomainAliases") or [])
    mesh["trustDomainAliases"] = list(aliases)
    cluster.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "istio", "namespace": "istio-system"},
                    "data": {**(configmap.get("data") or {}), "mesh": yaml.safe_dump(mesh, sort_keys=False)}}],
                  quiet=True)
    return before


def federated_domains(cluster: Cluster) -> list[str]:
    """The trust domains whose bundles the cluster's server holds besides its own (``bundle list``)."""
    listed = spire_server(cluster, "bundle", "list", "-format", "spiffe")
    return re.findall(r"^\* spiffe://(\S+)$", listed, flags=re.MULTILINE)


# --- the applications --------------------------------------------------------------------------------------------

def deploy_apps(lab: Lab, versions: Mapping[str, str]) -> None:
    """helloworld (the Service, and the version each cluster runs) in ``helloworld`` and sleep in ``sleep``, both
    namespaces injected; every pod federates with the other trust domain. Waits until they are ready.

    Args:
        lab: the lab.
        versions: the helloworld version per cluster (``{"cluster1": "v1", "cluster2": "v2"}``).
    """
    for cluster in lab:
        values = {"PEER_DOMAIN": trust_domain(peer(lab, cluster))}
        cluster.namespace("helloworld", labels={"istio-injection": "enabled"})
        cluster.namespace("sleep", labels={"istio-injection": "enabled"})
        cluster.apply("helloworld.yaml", selector="service=helloworld", values=values)
        cluster.apply("helloworld.yaml", selector=f"version={versions[cluster.name]}", values=values)
        cluster.apply("sleep.yaml", values=values)
    for cluster in lab:
        cluster.wait("helloworld", [f"deploy/helloworld-{versions[cluster.name]}"])
        cluster.wait("sleep", ["deploy/sleep"])


def wait_trusted(cluster: Cluster, workload: str, domains: list[str], *, timeout: float = 30.0) -> list[str]:
    """Wait until a proxy verifies peers against exactly ``domains`` (SPIRE's agent passes a bundle change on at
    its next sync); returns them.

    Args:
        cluster: the proxy's cluster.
        workload: ``deploy/<name>.<namespace>``.
        domains: the trust domains expected, sorted.
        timeout: seconds to wait.
    """
    return kube.poll(lambda: trusted_domains(cluster, workload) == domains and domains, timeout=timeout,
                     what=f"{workload} in {cluster.name} to trust {', '.join(domains)}")


# --- reading the outcome -----------------------------------------------------------------------------------------

def versions(calls: pd.DataFrame) -> set[str]:
    """The helloworld versions that answered (status 200)."""
    answered = calls[calls["status"] == 200]
    return set(answered["version"].dropna())


def only(calls: pd.DataFrame, *expected: str) -> bool:
    """Whether every call was answered (200) and exactly ``expected`` versions answered."""
    return not calls.empty and bool((calls["status"] == 200).all()) and versions(calls) == set(expected)


def outcome(calls: pd.DataFrame) -> str:
    """What the caller got, one line per distinct answer: ``12 × v2`` or ``3 × 503 upstream connect error …``."""
    if calls.empty:
        return "no calls"
    lines: dict[str, int] = {}
    for status, version, error in zip(calls["status"], calls["version"], calls["error"].fillna(""), strict=True):
        text = str(version) if status == 200 and isinstance(version, str) else f"{status} {error}".strip()
        lines[text] = lines.get(text, 0) + 1
    return "\n".join(f"{count} × {text}" for text, count in lines.items())


def resolved(nslookup: str) -> list[str]:
    """The addresses an ``nslookup`` answer gives for the name (not the DNS server's own address)."""
    return traffic.nslookup_addresses(nslookup)


def cluster_ip(cluster: Cluster, service: str, namespace: str) -> str:
    """A Service's ClusterIP, empty when there is no such Service."""
    found = cluster.object("v1", "Service", service, namespace) or {}
    return str((found.get("spec") or {}).get("clusterIP") or "")


@dataclass(frozen=True)
class Identity:
    """What a sidecar's certificate says of its workload.

    Args:
        spiffe_ids: the URI SANs (``spiffe://foo.com/ns/sleep/sa/sleep``).
        dns_names: the DNS SANs (SPIRE's registrar adds the pod's name).
        subject: the leaf's subject.
        issuer: who signed it (SPIRE's CA: ``C=US, O=SPIFFE``).
        chain: subject per certificate of the chain, leaf first.
    """

    spiffe_ids: tuple[str, ...]
    dns_names: tuple[str, ...]
    subject: str
    issuer: str
    chain: tuple[str, ...]


def sds_secrets(cluster: Cluster, workload: str) -> dict[str, dict[str, object]]:
    """A proxy's active SDS secrets by name (``default``, ``ROOTCA``), as ``istioctl proxy-config secret <workload>
    -o json`` lists them under ``dynamicActiveSecrets`` (read from Envoy's config dump).

    Args:
        cluster: the proxy's cluster.
        workload: ``deploy/<name>.<namespace>`` (istioctl's form).
    """
    target, namespace = parse_proxy(workload)
    dump = json.loads(cluster.exec(f"{namespace}/{target}", ["pilot-agent", "request", "GET",
                                                             "config_dump?resource=dynamic_active_secrets"],
                                   container="istio-proxy"))
    return {str(entry.get("name")): dict(entry.get("secret") or {}) for entry in dump.get("configs") or []}


def sds_certificates(cluster: Cluster, workload: str) -> str:
    """The certificate chain of a proxy's ``default`` SDS secret, as PEM (the article decodes
    ``dynamicActiveSecrets[0].secret.tlsCertificate.certificateChain.inlineBytes`` with jq and base64).

    Args:
        cluster: the proxy's cluster.
        workload: ``deploy/<name>.<namespace>`` (istioctl's form).
    """
    secret = sds_secrets(cluster, workload).get("default") or {}
    chain = (secret.get("tls_certificate") or {}).get("certificate_chain") or {}  # type: ignore[union-attr]
    if not chain.get("inline_string"):
        target, namespace = parse_proxy(workload)
        raise LabkitError(f"{workload} in {cluster.name} has no active SDS secret 'default' yet; wait until the pod "
                          f"is ready, or check its agent: kubectl logs -n {namespace} {target} -c istio-proxy")
    return str(chain["inline_string"])


def trusted_domains(cluster: Cluster, workload: str) -> list[str]:
    """The trust domains a proxy verifies peers against: one trust bundle per domain in its ``ROOTCA`` (SPIRE's
    SPIFFE validator), or only its own when ``ROOTCA`` is a plain CA (no federated bundle).

    Args:
        cluster: the proxy's cluster.
        workload: ``deploy/<name>.<namespace>``.
    """
    secret = sds_secrets(cluster, workload).get("ROOTCA") or {}
    validation: dict = secret.get("validation_context") or {}  # type: ignore[assignment]
    validator = (validation.get("custom_validator_config") or {}).get("typed_config") or {}
    if validator:
        return [str(d.get("name")) for d in validator.get("trust_domains") or []]
    return [trust_domain(cluster)] if validation.get("trusted_ca") else []


def identity(chain_pem: str) -> Identity:
    """The SANs, subject and issuer of a certificate chain's leaf (``openssl x509 -noout -text`` on ``cert-aa``)."""
    certificates = pki.describe(chain_pem)
    if not certificates:
        raise LabkitError("no certificate in the chain given; pass the PEM of sds_certificates()")
    leaf = certificates[0]
    return Identity(leaf.spiffe_ids, leaf.dns_names, leaf.subject, leaf.issuer,
                    tuple(c.subject for c in certificates))


def tls_failures(entries: list[istio.AccessLogEntry]) -> list[str]:
    """The distinct transport failure reasons of failed requests in an access log, e.g.
    ``TLS_error:|268435581:SSL_routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED``."""
    return list(dict.fromkeys(e.transport_failure for e in entries if e.failed and e.transport_failure))
