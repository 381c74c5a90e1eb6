"""Istio on any cluster: install, remote secrets, remote-clusters, proxy-config.

The one place where real and embedded clusters differ (DESIGN decision 1): :func:`install` runs istioctl
on a real cluster and applies a rendering of the same IstioOperator on an embedded one. Everything else
here is Kubernetes API and exec, identical on both. Imports ``labkit.kube`` and ``labkit.pki``, never
``kubernetes`` and never the emulator.
"""

from labkit.istio.access_log import AccessLogEntry, parse_access_log, proxy_access_log
from labkit.istio.installing import InstallResult, install, load_operator, render_operator
from labkit.istio.multicluster import connect, control_plane, eastwest_gateway, install_multi_primary, plug_in_ca
from labkit.istio.operator import GatewaySpec, InstallSettings, check_operator, settings_of, unsupported_fields
from labkit.istio.primary_remote import install_primary_remote, remote_control_plane
from labkit.istio.proxy_config import EndpointRow, EndpointTable, endpoint_table, proxy_endpoints
from labkit.istio.proxy_status import ProxyStatus, proxy_status
from labkit.istio.remote_clusters import RemoteCluster, parse_clusterz, parse_istioctl, remote_clusters
from labkit.istio.remote_secrets import (
    RemoteAccess,
    apply_remote_secret,
    create_remote_secret,
    delete_remote_secret,
    kubeconfig_of,
    redact_kubeconfig,
    remote_access,
    remote_kubeconfig,
    remote_secret,
)
from labkit.istio.rendering import RenderedInstall, render

__all__ = [
    "AccessLogEntry",
    "EndpointRow",
    "EndpointTable",
    "GatewaySpec",
    "InstallResult",
    "InstallSettings",
    "ProxyStatus",
    "RemoteAccess",
    "RemoteCluster",
    "RenderedInstall",
    "apply_remote_secret",
    "check_operator",
    "connect",
    "control_plane",
    "create_remote_secret",
    "delete_remote_secret",
    "eastwest_gateway",
    "endpoint_table",
    "install",
    "install_multi_primary",
    "install_primary_remote",
    "kubeconfig_of",
    "load_operator",
    "parse_access_log",
    "parse_clusterz",
    "parse_istioctl",
    "plug_in_ca",
    "proxy_access_log",
    "proxy_endpoints",
    "proxy_status",
    "redact_kubeconfig",
    "remote_access",
    "remote_clusters",
    "remote_control_plane",
    "remote_kubeconfig",
    "remote_secret",
    "render",
    "render_operator",
    "settings_of",
    "unsupported_fields",
]
