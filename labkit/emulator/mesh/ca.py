"""istiod's certificate authority: which CA signs the workload certificates agents ask for.

As in Istio, a ``cacerts`` Secret in istio-system plugs in an intermediate (``ca-cert.pem``,
``ca-key.pem``, ``cert-chain.pem``, ``root-cert.pem``); without it istiod signs with a self-signed root
kept in ``istio-ca-secret`` (created on first start). Workload certificates carry the pod's SPIFFE ID and
live 24 hours unless the agent asks for less; each agent asks for a new one when half its life is gone.
A CA whose files do not belong together (a key that does not match, a chain that does not verify) is
refused with the reason, rather than signing certificates no peer will accept.
"""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass

from labkit.core.wire import Obj
from labkit.errors import PkiError
from labkit.pki import CACERTS_FILES, CertificateAuthority, check_cacerts, new_root

CACERTS = "cacerts"
SELF_SIGNED = "istio-ca-secret"
WORKLOAD_LIFETIME = dt.timedelta(hours=24)


@dataclass(frozen=True)
class MeshCa:
    """The signing CA of a control plane and where it came from (``cacerts`` or ``istio-ca-secret``)."""

    authority: CertificateAuthority
    source: str

    @property
    def root_pem(self) -> str:
        return self.authority.root_pem


def _data(secret: Obj, key: str) -> str:
    value = (secret.get("data") or {}).get(key)
    if value is None:
        raise ValueError(f"secret {secret['metadata']['name']} has no {key}")
    return base64.b64decode(value).decode()


def load_ca(cacerts: Obj | None, self_signed: Obj | None) -> MeshCa | None:
    """The CA to sign with: ``cacerts`` first, else ``istio-ca-secret``; ``None`` when neither exists.

    Raises:
        labkit.errors.PkiError: the plugged-in files do not form a working CA (the message says why).
    """
    if cacerts is not None:
        meta = cacerts.get("metadata") or {}
        where = f"secret {meta.get('namespace', 'istio-system')}/{meta.get('name', CACERTS)}"
        files = {}
        for name in CACERTS_FILES:
            try:
                files[name] = base64.b64decode((cacerts.get("data") or {}).get(name) or "").decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise PkiError(f"{where} {name}: not base64-encoded PEM text ({exc})") from exc
        authority = check_cacerts(files, {name: f"{where} {name}" for name in CACERTS_FILES})
        return MeshCa(authority, CACERTS)
    if self_signed is not None:
        return MeshCa(CertificateAuthority.load(_data(self_signed, "ca-cert.pem"), _data(self_signed, "ca-key.pem"),
                                                source=SELF_SIGNED), SELF_SIGNED)
    return None


def new_self_signed_secret(namespace: str = "istio-system") -> Obj:
    """A fresh ``istio-ca-secret`` (what istiod creates when no CA is plugged in)."""
    # Istio's self-signed root: O=<trust domain>, RSA 2048, ten years.
    root = new_root(organization="cluster.local", common_name="istio-ca", key="rsa-2048")
    encoded = {name: base64.b64encode(text.encode()).decode() for name, text in (
        ("ca-cert.pem", root.cert_pem), ("ca-key.pem", root.key_pem), ("cert-chain.pem", ""),
        ("key.pem", ""), ("root-cert.pem", ""))}
    return {"apiVersion": "v1", "kind": "Secret", "type": "istio.io/ca-root",
            "metadata": {"name": SELF_SIGNED, "namespace": namespace}, "data": encoded}


class CurrentCa:
    """The CA istiod signs with now, and whether a reload changed it."""

    def __init__(self) -> None:
        self._ca: MeshCa | None = None

    def set_ca(self, ca: MeshCa | None) -> bool:
        """Use ``ca`` from now on; returns whether it changed."""
        changed = (ca.authority.cert_pem if ca else None) != (self._ca.authority.cert_pem if self._ca else None)
        self._ca = ca
        return changed

    @property
    def ca(self) -> MeshCa | None:
        return self._ca
