"""What a SPIRE program sees of its pod: its root folder, its API credentials, its mounted ConfigMaps.

Every container of an embedded pod runs with the pod's folder as its home and working directory; the absolute
paths of a real container (``/run/spire/config/server.conf``) live under it, where the node mounts ConfigMap
volumes. A file that is not there (yet) — a ConfigMap created after the pod, as ``spire-bundle`` is by the server's
notifier — is read the way the kubelet would fill it: the pod's own spec names the ConfigMap behind the
``volumeMount`` that holds the path, and the program reads that ConfigMap with its service-account token.

The SPIRE agent also needs the folders of *other* pods on its node (to place their Workload API sockets, as the
SPIFFE CSI driver places them under the kubelet's pod directories): the node keeps every pod's folder side by side,
named ``<namespace>_<name>_<uid>``, so the agent finds them next to its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from labkit.emulator.mesh.kubeclient import Credentials, KubeClient
from labkit.errors import SpireError


@dataclass(frozen=True)
class PodContext:
    """The running program's pod.

    Args:
        root: the pod's folder (``HOME``).
        name: the pod's name (``HOSTNAME``).
        namespace: the pod's namespace (from the service-account folder).
        account_dir: the service-account folder, or None when no token is mounted.
    """

    root: Path
    name: str
    namespace: str
    account_dir: Path | None

    @classmethod
    def from_environment(cls) -> PodContext:
        root = Path(os.environ.get("HOME") or os.getcwd())
        account = os.environ.get("LABKIT_SERVICEACCOUNT_DIR")
        account_dir = Path(account) if account else None
        namespace = os.environ.get("POD_NAMESPACE", "")
        if not namespace and account_dir is not None and (account_dir / "namespace").exists():
            namespace = (account_dir / "namespace").read_text().strip()
        return cls(root, os.environ.get("HOSTNAME", ""), namespace or "default", account_dir)

    def path(self, absolute: str | Path) -> Path:
        """A container path (``/run/spire/data``) inside the pod's folder."""
        return self.root / str(absolute).lstrip("/")

    def client(self) -> KubeClient:
        """A client of the pod's own API server, authenticated by its service-account token.

        Raises:
            SpireError: the pod has no token or no ``KUBERNETES_SERVICE_HOST``.
        """
        host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT")
        if self.account_dir is None or not host or not port:
            raise SpireError(f"pod {self.namespace}/{self.name} has no service-account token or no "
                             f"KUBERNETES_SERVICE_HOST: SPIRE reads the cluster with them; do not set "
                             f"automountServiceAccountToken: false.")
        return KubeClient(Credentials.in_cluster(self.account_dir, host, port))

    async def read_file(self, absolute: str) -> str:
        """A file of the container: from the pod's folder, else from the ConfigMap mounted over its directory.

        Raises:
            SpireError: neither the file nor a ConfigMap volume holding it exists.
        """
        local = self.path(absolute)
        if local.exists():
            return local.read_text()
        async with self.client() as client:
            pod = await client.get(f"/api/v1/namespaces/{self.namespace}/pods/{self.name}") or {}
            spec = pod.get("spec") or {}
            volumes = {v.get("name"): v for v in spec.get("volumes") or []}
            for container in spec.get("containers") or []:
                for mount in container.get("volumeMounts") or []:
                    directory = str(mount.get("mountPath", "")).rstrip("/")
                    source = (volumes.get(mount.get("name")) or {}).get("configMap")
                    if not source or not absolute.startswith(directory + "/"):
                        continue
                    key = absolute[len(directory) + 1:]
                    for item in source.get("items") or []:
                        if item.get("path") == key:
                            key = item.get("key", key)
                    config_map = await client.get(
                        f"/api/v1/namespaces/{self.namespace}/configmaps/{source.get('name')}")
                    data = (config_map or {}).get("data") or {}
                    if key in data:
                        return str(data[key])
        raise SpireError(f"{absolute}: no such file in pod {self.namespace}/{self.name}, and no ConfigMap volume "
                         f"mounted over its directory holds it; create the ConfigMap and mount it there.")

    def pod_folder(self, namespace: str, name: str, uid: str) -> Path:
        """Another pod's folder on this node (which the node may not have made yet)."""
        return self.root.parent / f"{namespace}_{name}_{uid}"
