"""ServiceAccount token Secrets get a token, the CA and the namespace, as istioctl create-remote-secret expects."""

from __future__ import annotations

import base64


def token_secret(name: str, account: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": name, "namespace": "istio-system",
                         "annotations": {"kubernetes.io/service-account.name": account}}}


def decoded(secret: dict) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in (secret.get("data") or {}).items()}


def test_token_secret_is_filled_and_revoked_with_its_account(cluster) -> None:
    async def scenario() -> None:
        # Listed before its ServiceAccount in a manifest: it waits for it.
        cluster.create(token_secret("reader-token", "istio-reader"))
        await cluster.settle()
        assert "data" not in cluster.get("", "secrets", "reader-token", "istio-system")

        account = cluster.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                  "metadata": {"name": "istio-reader", "namespace": "istio-system"}})
        await cluster.settle()
        secret = cluster.get("", "secrets", "reader-token", "istio-system")
        assert decoded(secret) == {"token": "token-for-istio-system-istio-reader",
                                   "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB-test-ca\n-----END CERTIFICATE-----\n",
                                   "namespace": "istio-system"}
        assert secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"] == account["metadata"]["uid"]
        # Plain Secrets and ServiceAccounts without token Secrets are left alone.
        assert cluster.list("", "secrets", "istio-system") == [secret]

        cluster.delete("", "serviceaccounts", "istio-reader", "istio-system")
        await cluster.settle()
        assert cluster.find("", "secrets", "reader-token", "istio-system") is None

    cluster.run(scenario)
