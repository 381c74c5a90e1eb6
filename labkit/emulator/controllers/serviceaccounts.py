"""Long-lived ServiceAccount token Secrets, filled in as the real token controller fills them.

Modern Kubernetes no longer creates a token Secret for every ServiceAccount; it only completes the
Secrets users create on purpose: ``type: kubernetes.io/service-account-token`` with the annotation
``kubernetes.io/service-account.name``. ``istioctl create-remote-secret`` (lab 1) and hand-made
kubeconfigs depend on that: they create such a Secret and read ``data.token`` and ``data.ca.crt``
back from it.

The token itself comes from the API layer (``issue_token``), which owns signing and validation, so
that a token handed out here authenticates as ``system:serviceaccount:<ns>:<name>``. When the
ServiceAccount is deleted, its token Secrets are deleted too, which revokes them.

One deviation: a token Secret created before its ServiceAccount waits for it (a real cluster deletes
it), so a manifest listing the Secret first still works.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable

from labkit.core.wire import Obj
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import DELETED, Store, WatchEvent

from .framework import Controller, Key, is_deleting

TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"



class ServiceAccountTokenController(Controller):
    """Fills ``token``, ``ca.crt`` and ``namespace`` into ServiceAccount token Secrets.

    Keys are ``(namespace, secret name)``.

    Args:
        store: the cluster's store.
        ca_pem: the cluster CA certificate (PEM), stored as ``ca.crt``.
        issue_token: ``issue_token(namespace, service_account_name) -> str``, a bearer token the API
            server accepts for that ServiceAccount.
    """

    name = "serviceaccount-token"

    def __init__(self, store: Store, ca_pem: str, issue_token: Callable[[str, str], str]):
        super().__init__(store)
        self.ca_pem = ca_pem
        self.issue_token = issue_token

    def keys_for(self, event: WatchEvent) -> Iterable[Key]:
        metadata = event.object["metadata"]
        namespace = metadata.get("namespace", "")
        if (event.group, event.resource) == ("", "secrets"):
            if event.type != DELETED and event.object.get("type") == TOKEN_TYPE:
                return [(namespace, metadata["name"])]
            return []
        if (event.group, event.resource) == ("", "serviceaccounts"):
            return [(namespace, s["metadata"]["name"]) for s in self._token_secrets(namespace, metadata["name"])]
        return []

    def initial_keys(self) -> Iterable[Key]:
        return [(s["metadata"].get("namespace", ""), s["metadata"]["name"])
                for s in self.store.list("", "secrets", field_selector=f"type={TOKEN_TYPE}").items]

    async def reconcile(self, key: Key) -> None:
        namespace, name = key  # type: ignore[misc]
        secret = self.store.find("", "secrets", name, namespace)
        if secret is None or is_deleting(secret) or secret.get("type") != TOKEN_TYPE:
            return
        annotations = secret["metadata"].get("annotations") or {}
        account_name = annotations.get(SA_NAME_ANNOTATION)
        if not account_name:
            return  # the API layer refuses these; nothing to fill in
        account = self.store.find("", "serviceaccounts", account_name, namespace)
        if account is None or is_deleting(account):
            if annotations.get(SA_UID_ANNOTATION):
                # Its ServiceAccount existed and is gone: the token is revoked with it.
                _delete(self.store, namespace, name)
            return  # waits for the ServiceAccount to be created
        uid = account["metadata"]["uid"]
        if annotations.get(SA_UID_ANNOTATION, uid) != uid:
            _delete(self.store, namespace, name)  # minted for an earlier ServiceAccount of that name
            return
        data = dict(secret.get("data") or {})
        wanted = {
            "ca.crt": _b64(self.ca_pem),
            "namespace": _b64(namespace),
        }
        if not data.get("token"):
            wanted["token"] = _b64(self.issue_token(namespace, account_name))
        if all(data.get(k) == v for k, v in wanted.items()) and annotations.get(SA_UID_ANNOTATION) == uid:
            return
        data.update(wanted)
        secret["data"] = data
        secret["metadata"].setdefault("annotations", {})[SA_UID_ANNOTATION] = uid
        self.store.update("", "secrets", secret)

    def _token_secrets(self, namespace: str, account_name: str) -> list[Obj]:
        return [
            s for s in self.store.list("", "secrets", namespace=namespace, field_selector=f"type={TOKEN_TYPE}").items
            if (s["metadata"].get("annotations") or {}).get(SA_NAME_ANNOTATION) == account_name
        ]


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _delete(store: Store, namespace: str, name: str) -> None:
    try:
        store.delete("", "secrets", name, namespace)
    except StatusError as exc:
        if exc.code != 404:
            raise
