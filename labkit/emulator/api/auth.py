"""Who is calling, and may they: bearer tokens and RBAC, as a real API server enforces them.

Remote secrets only teach something if their credentials are real: the token ``istioctl
create-remote-secret`` puts in a kubeconfig must let istiod read the other cluster and nothing more,
and deleting its Secret must revoke it. So tokens here are validated on every request and RBAC rules
(Roles, ClusterRoles and their bindings, read from the store) decide every verb.

Tokens are JWT-shaped (``header.payload.signature``) with the claims Kubernetes puts in
service-account tokens, signed with HMAC-SHA256 by a per-cluster key: another cluster's token, or an
edited one, fails the signature. A legacy token (from a ``kubernetes.io/service-account-token``
Secret) is valid while that Secret still holds it and its ServiceAccount exists with the same uid; a
bound token (``serviceaccounts/<name>/token``) while the ServiceAccount exists and it has not expired.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from labkit.emulator.apimachinery import status
from labkit.emulator.store import Store

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
ISSUER = "kubernetes/serviceaccount"
API_AUDIENCE = "https://kubernetes.default.svc.cluster.local"
"""The API server's own audience (``--api-audiences`` defaults to the issuer): bound tokens must name it."""


@dataclass(frozen=True)
class User:
    """An authenticated caller."""

    name: str
    groups: tuple[str, ...] = field(default=(AUTHENTICATED,))
    service_account: tuple[str, str] | None = None  # (namespace, name)
    uid: str = ""

    @property
    def is_admin(self) -> bool:
        """Members of ``system:masters`` bypass RBAC, as on a real cluster."""
        return MASTERS in self.groups


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Issues and checks the bearer tokens of one cluster.

    Args:
        store: the cluster's store, where ServiceAccounts and token Secrets live.
        admin_token: the token written into the kubeconfig (``kubernetes-admin``, ``system:masters``).
        signing_key: HMAC key for service-account tokens; random by default.
    """

    def __init__(self, store: Store, admin_token: str, signing_key: bytes | None = None):
        self._store = store
        self._admin_token = admin_token
        self._key = signing_key or secrets.token_bytes(32)

    def issue_legacy_token(self, namespace: str, service_account: str, secret_name: str, sa_uid: str) -> str:
        """The token of a ``kubernetes.io/service-account-token`` Secret."""
        return self._sign({
            "iss": ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": service_account,
            "kubernetes.io/serviceaccount/service-account.uid": sa_uid,
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        })

    def issue_bound_token(self, namespace: str, service_account: str, sa_uid: str, seconds: int,
                          audiences: Iterable[str] = ()) -> tuple[str, int]:
        """A TokenRequest token; returns ``(token, expiration as unix time)``."""
        now = int(time.time())
        expires = now + seconds
        token = self._sign({
            "aud": list(audiences) or [API_AUDIENCE],
            "exp": expires,
            "iat": now,
            "iss": API_AUDIENCE,
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": service_account, "uid": sa_uid}},
            "sub": f"system:serviceaccount:{namespace}:{service_account}",
        })
        return token, expires

    def authenticate(self, authorization: str | None) -> User:
        """The user behind an ``Authorization`` header.

        Raises:
            StatusError: 401 for a missing, malformed, forged, expired or revoked token.
        """
        if not authorization or not authorization.startswith("Bearer "):
            raise status.unauthorized()
        token = authorization.removeprefix("Bearer ").strip()
        user, _ = self.review(token)
        if user is None:
            raise status.unauthorized()
        return user

    def review(self, token: str, audiences: Iterable[str] = ()) -> tuple[User | None, list[str]]:
        """Who a token stands for, and the audiences it was accepted for (a TokenReview).

        A bound token is accepted only for an audience it names: the API server's own by default, so a
        token made for another audience (``kubectl create token --audience istio-ca``) opens nothing here.

        Args:
            token: the bearer token.
            audiences: the audiences the caller wants the token checked against; the API server's by default.
        """
        wanted = list(audiences) or [API_AUDIENCE]
        if hmac.compare_digest(token, self._admin_token):
            return User("kubernetes-admin", (MASTERS, AUTHENTICATED)), wanted
        claims = self._verify(token)
        if claims is None:
            return None, []
        if "aud" in claims:
            accepted = [audience for audience in wanted if audience in (claims.get("aud") or [])]
            if not accepted:
                return None, []
        else:
            accepted = wanted
        return self._service_account_user(token, claims), accepted

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def _verify(self, token: str) -> dict[str, Any] | None:
        parts = token.split(".")
        if len(parts) != 3:
            return None
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(_unb64(parts[2]), expected):
                return None
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(claims, dict):
            return None
        if "exp" in claims and int(claims["exp"]) < time.time():
            return None
        return claims

    def _service_account_user(self, token: str, claims: dict[str, Any]) -> User | None:
        if claims.get("iss") == ISSUER:
            namespace = claims.get("kubernetes.io/serviceaccount/namespace", "")
            name = claims.get("kubernetes.io/serviceaccount/service-account.name", "")
            uid = claims.get("kubernetes.io/serviceaccount/service-account.uid", "")
            secret = self._store.find("", "secrets", claims.get("kubernetes.io/serviceaccount/secret.name", ""),
                                      namespace)
            held = (secret or {}).get("data", {}).get("token", "")
            if not secret or base64.b64decode(held or "").decode(errors="replace") != token:
                return None
        else:
            bound = claims.get("kubernetes.io") or {}
            namespace = bound.get("namespace", "")
            name = (bound.get("serviceaccount") or {}).get("name", "")
            uid = (bound.get("serviceaccount") or {}).get("uid", "")
        account = self._store.find("", "serviceaccounts", name, namespace)
        if not account or account["metadata"]["uid"] != uid:
            return None
        return service_account_user(namespace, name, uid)


def service_account_user(namespace: str, name: str, uid: str = "") -> User:
    """The user a ServiceAccount authenticates as, with the groups Kubernetes gives it."""
    groups = ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED)
    return User(f"system:serviceaccount:{namespace}:{name}", groups, (namespace, name), uid)


@dataclass(frozen=True)
class Request:
    """What RBAC decides on: a verb on a resource (or a non-resource path)."""

    verb: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


# Paths every authenticated user may read (system:discovery, system:public-info-viewer).
_PUBLIC_PATHS = ("/api", "/apis", "/version", "/openapi", "/healthz", "/readyz", "/livez")


class Authorizer:
    """RBAC over the Roles, ClusterRoles and bindings in the store."""

    def __init__(self, store: Store):
        self._store = store

    def allows(self, user: User, request: Request) -> bool:
        """Whether ``user`` may do ``request`` (a SubjectAccessReview's answer)."""
        if user.is_admin:
            return True
        if not request.resource:
            return request.path.startswith(_PUBLIC_PATHS) or self._allows_path(user, request)
        return any(self._rule_allows(rule, request) for rule in self._rules_for(user, request.namespace))

    def rules(self, user: User, namespace: str) -> list[dict[str, Any]]:
        """Every rule that applies to ``user`` in ``namespace`` (a SelfSubjectRulesReview's answer)."""
        if user.is_admin:
            return [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                    {"nonResourceURLs": ["*"], "verbs": ["*"]}]
        return list(self._rules_for(user, namespace))

    def authorize(self, user: User, request: Request) -> None:
        """Raise 403 with Kubernetes' wording unless ``user`` may do ``request``."""
        if self.allows(user, request):
            return
        if not request.resource:
            raise status.forbidden(f'forbidden: User "{user.name}" cannot {request.verb} path "{request.path}"')
        resource = request.resource + (f"/{request.subresource}" if request.subresource else "")
        where = f' in the namespace "{request.namespace}"' if request.namespace else " at the cluster scope"
        # Kubernetes names the resource with its group: deployments.apps "web" is forbidden …
        qualified = f"{request.resource}.{request.group}" if request.group else request.resource
        subject = f'{qualified} "{request.name}"' if request.name else qualified
        raise status.forbidden(
            f'{subject} is forbidden: User "{user.name}" cannot {request.verb} resource "{resource}" '
            f'in API group "{request.group}"{where}',
            request.resource, request.name, request.group,
        )

    def _rules_for(self, user: User, namespace: str) -> Iterable[dict[str, Any]]:
        for binding in self._store.list("rbac.authorization.k8s.io", "clusterrolebindings").items:
            if self._binds(binding, user):
                yield from self._role_rules(binding, "")
        if namespace:
            for binding in self._store.list("rbac.authorization.k8s.io", "rolebindings", namespace=namespace).items:
                if self._binds(binding, user):
                    yield from self._role_rules(binding, namespace)

    def _role_rules(self, binding: dict[str, Any], namespace: str) -> list[dict[str, Any]]:
        ref = binding.get("roleRef") or {}
        if ref.get("kind") == "ClusterRole":
            role = self._store.find("rbac.authorization.k8s.io", "clusterroles", ref.get("name", ""))
        else:
            role = self._store.find("rbac.authorization.k8s.io", "roles", ref.get("name", ""), namespace)
        return list((role or {}).get("rules") or [])

    @staticmethod
    def _binds(binding: dict[str, Any], user: User) -> bool:
        for subject in binding.get("subjects") or []:
            kind, name = subject.get("kind"), subject.get("name")
            if kind == "User" and name == user.name:
                return True
            if kind == "Group" and name in user.groups:
                return True
            if kind == "ServiceAccount" and user.service_account == (
                    subject.get("namespace") or binding["metadata"].get("namespace", ""), name):
                return True
        return False

    @staticmethod
    def _rule_allows(rule: dict[str, Any], request: Request) -> bool:
        verbs, groups = rule.get("verbs") or [], rule.get("apiGroups") or []
        resources, names = rule.get("resources") or [], rule.get("resourceNames") or []
        resource = request.resource + (f"/{request.subresource}" if request.subresource else "")
        return (
            ("*" in verbs or request.verb in verbs)
            and ("*" in groups or request.group in groups)
            and ("*" in resources or resource in resources
                 or (request.subresource and f"{request.resource}/*" in resources))
            and (not names or request.name in names)
        )

    def _allows_path(self, user: User, request: Request) -> bool:
        for rule in self._rules_for(user, ""):
            urls = rule.get("nonResourceURLs") or []
            verbs = rule.get("verbs") or []
            if ("*" in verbs or request.verb in verbs) and any(
                    url == request.path or (url.endswith("*") and request.path.startswith(url[:-1])) for url in urls):
                return True
        return False


def bootstrap_roles() -> list[dict[str, Any]]:
    """The ClusterRoles every cluster starts with (the ones labs bind to), simplified from Kubernetes'."""
    def cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
                "rules": rules}

    read = ["get", "list", "watch"]
    write = ["create", "update", "patch", "delete", "deletecollection"]
    return [
        cluster_role("cluster-admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                                       {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        cluster_role("admin", [{"apiGroups": ["*"], "resources": ["*"], "verbs": read + write}]),
        cluster_role("edit", [{"apiGroups": ["", "apps", "discovery.k8s.io", "networking.istio.io",
                                             "security.istio.io"], "resources": ["*"], "verbs": read + write}]),
        cluster_role("view", [{"apiGroups": ["", "apps", "discovery.k8s.io"], "resources": ["*"], "verbs": read}]),
        # What every authenticated user may do on a real cluster: ask what it may do, and read discovery.
        cluster_role("system:basic-user", [
            {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews",
                                                                  "selfsubjectrulesreviews"], "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]}]),
        cluster_role("system:discovery", [{"nonResourceURLs": [
            "/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz",
            "/version", "/version/"], "verbs": ["get"]}]),
        cluster_role("system:public-info-viewer", [{"nonResourceURLs": [
            "/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
    ]


def bootstrap_role_bindings() -> list[dict[str, Any]]:
    """The ClusterRoleBindings every cluster starts with: the self-reviews and discovery for every user."""
    return [{"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                          "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": AUTHENTICATED}]}
            for name in ("system:basic-user", "system:discovery", "system:public-info-viewer")]
