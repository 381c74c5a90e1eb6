"""SPIRE's configuration files (HCL, as ``server.conf``, ``agent.conf`` and the registrar's), read into values.

SPIRE reads HashiCorp's HCL 1; ``pyhcl`` parses the same language, so the article's ConfigMaps work as they are.
Only the settings the labs use are read; the others are accepted and ignored, as a real server ignores what no
plugin of its build uses. An address of ``0.0.0.0`` binds the pod's own IP: every embedded pod has an address of its
own on one machine, and two servers listening on 0.0.0.0:8443 would collide where on real nodes they do not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import hcl

from labkit.errors import SpireError

DEFAULT_SOCKET = "/tmp/spire-server/private/api.sock"
DEFAULT_AGENT_SOCKET = "/tmp/spire-agent/public/api.sock"
DEFAULT_REFRESH_HINT = 300


def parse(text: str, source: str) -> dict[str, Any]:
    try:
        value = hcl.loads(text)
    except ValueError as exc:
        raise SpireError(f"could not parse {source}: {exc}") from exc
    if not isinstance(value, dict):
        raise SpireError(f"could not parse {source}: not an HCL object")
    return value


def bind_host(address: str) -> str:
    """Where to listen for a configured address: the pod IP for the any-address and for ``localhost`` (the kubelet
    probes the pod IP; inside a real pod, localhost and the pod IP share one network namespace)."""
    if address in ("", "0.0.0.0", "::", "localhost"):
        return os.environ.get("POD_IP") or "127.0.0.1"
    return address


def _plugin(config: dict[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    plugins = (config.get("plugins") or {}).get(kind) or {}
    plugin = plugins.get(name)
    if plugin is None:
        return None
    return dict((plugin or {}).get("plugin_data") or {})


@dataclass(frozen=True)
class HealthChecks:
    """The top-level ``health_checks`` block: an HTTP listener for the kubelet's liveness and readiness probes."""

    bind_address: str = "localhost"
    bind_port: int = 80
    live_path: str = "/live"
    ready_path: str = "/ready"

    @classmethod
    def parse(cls, config: dict[str, Any]) -> HealthChecks | None:
        block = config.get("health_checks") or {}
        if not block.get("listener_enabled"):
            return None
        return cls(str(block.get("bind_address", "localhost")), int(block.get("bind_port", 80)),
                   str(block.get("live_path", "/live")), str(block.get("ready_path", "/ready")))


@dataclass(frozen=True)
class Peer:
    """One ``federates_with`` block (profile ``https_spiffe``)."""

    trust_domain: str
    url: str
    endpoint_spiffe_id: str


@dataclass(frozen=True)
class ServerConfig:
    trust_domain: str
    bind_address: str = "0.0.0.0"
    bind_port: int = 8081
    socket_path: str = DEFAULT_SOCKET
    data_dir: str = "/run/spire/data"
    ca_subject: tuple[tuple[str, str], ...] = (("C", "US"), ("O", "SPIFFE"))
    default_x509_svid_ttl: int = 3600
    bundle_endpoint: tuple[str, int] | None = None
    refresh_hint: int = DEFAULT_REFRESH_HINT
    peers: tuple[Peer, ...] = ()
    clusters: tuple[str, ...] = ()
    allowed_agents: tuple[str, ...] = ("spire:spire-agent",)
    bundle_config_map: tuple[str, str, str] | None = None  # namespace, name, key (k8sbundle notifier)
    health_checks: HealthChecks | None = None

    @classmethod
    def parse(cls, text: str, source: str = "server.conf") -> ServerConfig:
        config = parse(text, source)
        server = config.get("server") or {}
        domain = server.get("trust_domain")
        if not domain:
            raise SpireError(f"{source}: server.trust_domain is required (e.g. trust_domain = \"foo.com\").")
        subject = server.get("ca_subject") or {}
        pairs: list[tuple[str, str]] = []
        for key, short in (("country", "C"), ("organization", "O"), ("organizational_unit", "OU")):
            pairs += [(short, str(v)) for v in _as_list(subject.get(key))]
        if subject.get("common_name"):
            pairs.append(("CN", str(subject["common_name"])))
        federation = server.get("federation") or {}
        endpoint = federation.get("bundle_endpoint")
        bundle_endpoint = None
        refresh = DEFAULT_REFRESH_HINT
        if endpoint is not None:
            bundle_endpoint = (str(endpoint.get("address", "0.0.0.0")), int(endpoint.get("port", 443)))
            refresh = _seconds(endpoint.get("refresh_hint"), DEFAULT_REFRESH_HINT)
        peers = []
        for domain_name, block in (federation.get("federates_with") or {}).items():
            profile = block.get("bundle_endpoint_profile") or {}
            spiffe_profile = profile.get("https_spiffe")
            if spiffe_profile is None:
                raise SpireError(f"{source}: federates_with \"{domain_name}\" uses a profile labkit does not serve; "
                                 f"use bundle_endpoint_profile \"https_spiffe\" {{ endpoint_spiffe_id = ... }}.")
            peers.append(Peer(domain_name, str(block.get("bundle_endpoint_url", "")),
                              str(spiffe_profile.get("endpoint_spiffe_id") or f"spiffe://{domain_name}/spire/server")))
        psat = _plugin(config, "NodeAttestor", "k8s_psat") or {}
        clusters = tuple((psat.get("clusters") or {}).keys())
        allowed = tuple(sorted({a for c in (psat.get("clusters") or {}).values()
                                for a in _as_list((c or {}).get("service_account_allow_list"))})) \
            or ("spire:spire-agent",)
        notifier = _plugin(config, "Notifier", "k8sbundle")
        config_map = None
        if notifier is not None:
            config_map = (str(notifier.get("namespace", "spire")), str(notifier.get("config_map", "spire-bundle")),
                          str(notifier.get("config_map_key", "bundle.crt")))
        return cls(
            trust_domain=str(domain), bind_address=str(server.get("bind_address", "0.0.0.0")),
            bind_port=int(server.get("bind_port", 8081)), socket_path=str(server.get("socket_path", DEFAULT_SOCKET)),
            data_dir=str(server.get("data_dir", "/run/spire/data")),
            ca_subject=tuple(pairs) or (("C", "US"), ("O", "SPIFFE")),
            default_x509_svid_ttl=_seconds(server.get("default_x509_svid_ttl") or server.get("default_svid_ttl"),
                                           3600),
            bundle_endpoint=bundle_endpoint, refresh_hint=refresh, peers=tuple(peers), clusters=clusters,
            allowed_agents=allowed, bundle_config_map=config_map, health_checks=HealthChecks.parse(config))


@dataclass(frozen=True)
class AgentConfig:
    trust_domain: str
    server_address: str
    server_port: int = 8081
    socket_path: str = DEFAULT_AGENT_SOCKET
    trust_bundle_path: str = ""
    insecure_bootstrap: bool = False
    cluster: str = ""
    token_path: str = "/var/run/secrets/tokens/spire-agent"
    health_checks: HealthChecks | None = None

    @classmethod
    def parse(cls, text: str, source: str = "agent.conf") -> AgentConfig:
        config = parse(text, source)
        agent = config.get("agent") or {}
        for required in ("trust_domain", "server_address"):
            if not agent.get(required):
                raise SpireError(f"{source}: agent.{required} is required.")
        psat = _plugin(config, "NodeAttestor", "k8s_psat") or {}
        if not psat.get("cluster"):
            raise SpireError(f"{source}: the k8s_psat NodeAttestor needs plugin_data {{ cluster = \"...\" }}.")
        return cls(trust_domain=str(agent["trust_domain"]), server_address=str(agent["server_address"]),
                   server_port=int(agent.get("server_port", 8081)),
                   socket_path=str(agent.get("socket_path", DEFAULT_AGENT_SOCKET)),
                   trust_bundle_path=str(agent.get("trust_bundle_path", "")),
                   insecure_bootstrap=bool(agent.get("insecure_bootstrap", False)), cluster=str(psat["cluster"]),
                   token_path=str(psat.get("token_path", "/var/run/secrets/tokens/spire-agent")),
                   health_checks=HealthChecks.parse(config))


@dataclass(frozen=True)
class RegistrarConfig:
    """``k8s-workload-registrar.conf`` in CRD mode with the pod controller, as the article's (SPIRE 1.5)."""

    trust_domain: str
    cluster: str
    server_socket_path: str = DEFAULT_SOCKET
    identity_template: str = "ns/{{.Pod.Namespace}}/sa/{{.Pod.ServiceAccount}}"
    ignore_namespaces: tuple[str, ...] = ("kube-system", "kube-public", "spire")
    federates_with_annotation: str = "spiffe.io/federatesWith"

    @classmethod
    def parse(cls, text: str, source: str = "k8s-workload-registrar.conf") -> RegistrarConfig:
        config = parse(text, source)
        for required in ("trust_domain", "cluster"):
            if not config.get(required):
                raise SpireError(f"{source}: {required} is required.")
        return cls(str(config["trust_domain"]), str(config["cluster"]),
                   str(config.get("server_socket_path", DEFAULT_SOCKET)),
                   str(config.get("identity_template") or cls.identity_template),
                   tuple(_as_list(config.get("ignore_namespaces"))) or cls.ignore_namespaces)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _seconds(value: Any, default: int) -> int:
    """``"1h"``, ``"5m"``, ``"30s"`` or a number of seconds."""
    if value in (None, ""):
        return default
    text = str(value).strip()
    units = {"h": 3600, "m": 60, "s": 1}
    if text[-1:] in units and text[:-1].isdigit():
        return int(text[:-1]) * units[text[-1]]
    try:
        return int(text)
    except ValueError as exc:
        raise SpireError(f"{value!r} is not a duration: use e.g. 30s, 5m or 1h.") from exc
