"""SDS: the certificates a proxy presents and the roots it trusts, as Istio's agent serves them.

Istio's agent answers two names: ``default`` (the workload's certificate chain and key) and ``ROOTCA`` (what
peers are checked against). With one trust domain ``ROOTCA`` is a plain ``trusted_ca``. With several (SPIRE
federation, lab 5) a single CA bundle would let foo.com's CA vouch for a bar.com identity, so ``ROOTCA``
becomes Envoy's SPIFFE validator, which picks the bundle by the peer's trust domain. Gateways that terminate
TLS with a ``credentialName`` get ``kubernetes://<name>`` from :func:`build_tls_secret`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from labkit.emulator.mesh.xds import common, names


def build_secrets(credential_pem: str, key_pem: str, roots: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ``default`` and ``ROOTCA`` secrets of a proxy.

    Args:
        credential_pem: the workload certificate followed by its chain (Istio's ``cert-chain.pem``).
        key_pem: the workload's private key.
        roots: trust domain → PEM bundle of the roots for it; one entry for an ordinary mesh.

    Raises:
        ValueError: no roots at all (nothing could ever be verified).
    """
    if not roots:
        raise ValueError("build_secrets needs at least one trust domain's root certificates (roots is empty)")
    return [build_tls_secret(names.SDS_DEFAULT, credential_pem, key_pem), build_root_secret(roots)]


def build_tls_secret(name: str, certificate_chain_pem: str, key_pem: str) -> dict[str, Any]:
    """A ``tls_certificate`` secret (``default``, or ``kubernetes://<credentialName>`` for a gateway).

    Args:
        name: the SDS name.
        certificate_chain_pem: leaf first, then intermediates.
        key_pem: the private key.
    """
    return {"@type": common.SECRET, "name": name, "tls_certificate": {
        "certificate_chain": {"inline_string": certificate_chain_pem},
        "private_key": {"inline_string": key_pem},
    }}


def build_root_secret(roots: Mapping[str, str], name: str = names.SDS_ROOT) -> dict[str, Any]:
    """The validation secret: ``trusted_ca`` for one trust domain, the SPIFFE validator for several.

    Args:
        roots: trust domain → PEM bundle.
        name: the SDS name (``ROOTCA``, or ``kubernetes://<credentialName>-cacert``).
    """
    if len(roots) == 1:
        validation: dict[str, Any] = {"trusted_ca": {"inline_string": next(iter(roots.values()))}}
    else:
        validation = {"custom_validator_config": {
            "name": "envoy.tls.cert_validator.spiffe",
            "typed_config": {"@type": common.SPIFFE_VALIDATOR, "trust_domains": [
                {"name": domain, "trust_bundle": {"inline_string": pem}} for domain, pem in sorted(roots.items())]},
        }}
    return {"@type": common.SECRET, "name": name, "validation_context": validation}
