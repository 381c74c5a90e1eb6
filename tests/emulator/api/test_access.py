"""Impersonation, the review APIs and their protobuf bodies, against a store with real RBAC objects."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict

from labkit.emulator.api.access import impersonate, review
from labkit.emulator.api.auth import (
    MASTERS,
    Authenticator,
    Authorizer,
    Request,
    User,
    bootstrap_role_bindings,
    bootstrap_roles,
    service_account_user,
)
from labkit.emulator.api.protobuf import decode_object
from labkit.emulator.apimachinery.status import StatusError
from labkit.emulator.store import Store

RBAC = "rbac.authorization.k8s.io"
ADMIN = User("kubernetes-admin", (MASTERS, "system:authenticated"))
READER = service_account_user("istio-system", "istio-reader-service-account")
NOBODY = service_account_user("demo", "nobody")


@pytest.fixture
def store() -> Store:
    store = Store()
    for role in bootstrap_roles():
        store.create(RBAC, "clusterroles", role)
    for binding in bootstrap_role_bindings():
        store.create(RBAC, "clusterrolebindings", binding)
    for namespace, name in (("istio-system", "istio-reader-service-account"), ("demo", "nobody")):
        store.create("", "serviceaccounts", {"metadata": {"name": name, "namespace": namespace}})
    store.create(RBAC, "clusterroles", {"metadata": {"name": "reader"}, "rules": [
        {"apiGroups": [""], "resources": ["secrets", "pods"], "verbs": ["get", "list", "watch"]}]})
    store.create(RBAC, "clusterrolebindings", {
        "metadata": {"name": "reader"}, "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "istio-reader-service-account",
                      "namespace": "istio-system"}]})
    store.create(RBAC, "clusterroles", {"metadata": {"name": "impersonator"}, "rules": [
        {"apiGroups": [""], "resources": ["users"], "verbs": ["impersonate"], "resourceNames": ["alice"]}]})
    store.create(RBAC, "clusterrolebindings", {
        "metadata": {"name": "impersonator"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": "impersonator"},
        "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": "demo"}]})
    return store


def headers(*pairs: tuple[str, str]) -> CIMultiDict[str]:
    return CIMultiDict(pairs)


def test_impersonating_a_service_account_gives_its_groups_and_its_rbac(store: Store) -> None:
    authorizer = Authorizer(store)
    user = impersonate(ADMIN, headers(("Impersonate-User", READER.name)), authorizer)
    assert user == READER
    assert authorizer.allows(user, Request("list", "", "secrets", namespace="default"))
    with pytest.raises(StatusError) as refused:
        authorizer.authorize(user, Request("create", "", "configmaps", namespace="default"))
    assert refused.value.code == 403
    assert refused.value.message == (f'configmaps is forbidden: User "{READER.name}" cannot create resource '
                                     f'"configmaps" in API group "" in the namespace "default"')


def test_impersonation_without_the_verb_is_forbidden_naming_what_was_asked(store: Store) -> None:
    authorizer = Authorizer(store)
    assert impersonate(NOBODY, headers(("Impersonate-User", "alice")), authorizer).name == "alice"
    with pytest.raises(StatusError) as refused:
        impersonate(NOBODY, headers(("Impersonate-User", "bob")), authorizer)
    assert refused.value.message == (f'users "bob" is forbidden: User "{NOBODY.name}" cannot impersonate resource '
                                     f'"users" in API group "" at the cluster scope')
    with pytest.raises(StatusError) as refused:
        impersonate(NOBODY, headers(("Impersonate-User", "alice"), ("Impersonate-Group", MASTERS)), authorizer)
    assert refused.value.message.startswith(f'groups "{MASTERS}" is forbidden')
    with pytest.raises(StatusError) as refused:
        impersonate(NOBODY, headers(("Impersonate-User", READER.name)), authorizer)
    assert refused.value.message == (
        f'serviceaccounts "istio-reader-service-account" is forbidden: User "{NOBODY.name}" cannot impersonate '
        f'resource "serviceaccounts" in API group "" in the namespace "istio-system"')


def test_impersonated_groups_join_system_authenticated_and_need_a_user(store: Store) -> None:
    authorizer = Authorizer(store)
    user = impersonate(ADMIN, headers(("Impersonate-User", "alice"), ("Impersonate-Group", "devs"),
                                      ("Impersonate-Group", "ops")), authorizer)
    assert user.groups == ("devs", "ops", "system:authenticated") and not user.is_admin
    assert impersonate(ADMIN, headers(), authorizer) is ADMIN
    with pytest.raises(StatusError) as refused:
        impersonate(ADMIN, headers(("Impersonate-Group", "devs")), authorizer)
    assert refused.value.code == 400


def answer(store: Store, group: str, plural: str, body: dict[str, Any], user: User) -> dict[str, Any]:
    return review(group, plural, body, user, Authorizer(store), Authenticator(store, "admin-token"))


def test_access_reviews_answer_from_the_same_rbac(store: Store) -> None:
    can_i = {"spec": {"resourceAttributes": {"verb": "list", "resource": "secrets", "namespace": "x"}}}
    assert answer(store, "authorization.k8s.io", "selfsubjectaccessreviews", can_i, READER)["status"]["allowed"]
    assert answer(store, "authorization.k8s.io", "selfsubjectaccessreviews", can_i, NOBODY)["status"] == {
        "allowed": False}
    theirs = {"spec": {"user": READER.name, **can_i["spec"]}}
    assert answer(store, "authorization.k8s.io", "subjectaccessreviews", theirs, ADMIN)["status"]["allowed"]
    path = {"spec": {"nonResourceAttributes": {"verb": "get", "path": "/version"}}}
    assert answer(store, "authorization.k8s.io", "selfsubjectaccessreviews", path, NOBODY)["status"]["allowed"]


def test_rules_review_lists_what_applies_in_the_namespace(store: Store) -> None:
    rules = answer(store, "authorization.k8s.io", "selfsubjectrulesreviews", {"spec": {"namespace": "x"}},
                   READER)["status"]
    assert {"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["secrets", "pods"]} in \
        rules["resourceRules"]
    assert {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
            "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]} in rules["resourceRules"]
    assert any("/version" in rule["nonResourceURLs"] for rule in rules["nonResourceRules"])
    assert rules["incomplete"] is False


def test_self_subject_review_and_token_review(store: Store) -> None:
    authenticator = Authenticator(store, "admin-token")
    account = store.get("", "serviceaccounts", "nobody", "demo")
    whoami = answer(store, "authentication.k8s.io", "selfsubjectreviews", {}, NOBODY)
    assert whoami["status"]["userInfo"] == {"username": NOBODY.name, "groups": list(NOBODY.groups)}
    token, _ = authenticator.issue_bound_token("demo", "nobody", account["metadata"]["uid"], 600, ["istio-ca"])
    reviewed = review("authentication.k8s.io", "tokenreviews", {"spec": {"token": token, "audiences": ["istio-ca"]}},
                      ADMIN, Authorizer(store), authenticator)["status"]
    assert reviewed["authenticated"] and reviewed["audiences"] == ["istio-ca"]
    assert reviewed["user"]["username"] == NOBODY.name and reviewed["user"]["uid"] == account["metadata"]["uid"]
    # The API server itself is not the audience this token was made for.
    with pytest.raises(StatusError) as refused:
        authenticator.authenticate(f"Bearer {token}")
    assert refused.value.code == 401


def test_an_expired_bound_token_is_refused(store: Store) -> None:
    authenticator = Authenticator(store, "admin-token")
    uid = store.get("", "serviceaccounts", "nobody", "demo")["metadata"]["uid"]
    fresh, _ = authenticator.issue_bound_token("demo", "nobody", uid, 600)
    assert authenticator.authenticate(f"Bearer {fresh}").name == NOBODY.name
    stale, _ = authenticator.issue_bound_token("demo", "nobody", uid, -1)
    with pytest.raises(StatusError):
        authenticator.authenticate(f"Bearer {stale}")


# Bodies kubectl 1.32 sent (``-v=8``): ``auth can-i list secrets -n x --subresource=status``,
# ``auth can-i --list -n x``, ``auth whoami`` and ``create token nobody -n x --duration=2h --audience=foo
# --audience=bar``.
_KUBECTL_BODIES = {
    "can-i": (
        "6b3873000a320a17617574686f72697a6174696f6e2e6b38732e696f2f7631121753656c665375626a65637441636365"
        "737352657669657712400a100a0012001a0022002a0032003800420012220a200a017812046c6973741a0022002a0773"
        "65637265747332067374617475733a001a08080012001a0020001a002200"
    ),
    "can-i --list": (
        "6b3873000a310a17617574686f72697a6174696f6e2e6b38732e696f2f7631121653656c665375626a65637452756c65"
        "73526576696577121d0a100a0012001a0022002a0032003800420012030a01781a04180022001a002200"
    ),
    "whoami": (
        "6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a656374526576"
        "696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200"
    ),
    "create token": (
        "6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e526571756573741227"
        "0a100a0012001a0022002a00320038004200120d0a03666f6f0a0362617220a0381a040a0012001a002200"
    ),
}


def _body(name: str) -> bytes:
    return bytes.fromhex(_KUBECTL_BODIES[name])


def test_kubectl_protobuf_bodies_decode_to_what_the_commands_asked() -> None:
    can_i = decode_object(_body("can-i"))
    assert (can_i["apiVersion"], can_i["kind"]) == ("authorization.k8s.io/v1", "SelfSubjectAccessReview")
    assert can_i["spec"]["resourceAttributes"] == {"namespace": "x", "verb": "list", "resource": "secrets",
                                                   "subresource": "status"}
    rules = decode_object(_body("can-i --list"))
    assert rules["kind"] == "SelfSubjectRulesReview" and rules["spec"] == {"namespace": "x"}
    assert decode_object(_body("whoami"))["kind"] == "SelfSubjectReview"
    token = decode_object(_body("create token"))
    assert token["kind"] == "TokenRequest"
    assert token["spec"] == {"audiences": ["foo", "bar"], "expirationSeconds": 7200}


def test_impersonated_extras_are_checked_and_forbidden_names_the_group(store: Store) -> None:
    authorizer = Authorizer(store)
    with pytest.raises(StatusError) as refused:
        impersonate(NOBODY, headers(("Impersonate-User", "alice"), ("Impersonate-Extra-Scopes", "view")), authorizer)
    assert refused.value.message == (
        f'userextras.authentication.k8s.io "view" is forbidden: User "{NOBODY.name}" cannot impersonate resource '
        f'"userextras/scopes" in API group "authentication.k8s.io" at the cluster scope')
    assert impersonate(ADMIN, headers(("Impersonate-User", "alice"), ("Impersonate-Extra-Scopes", "view")),
                       authorizer).name == "alice"
    with pytest.raises(StatusError) as refused:
        authorizer.authorize(READER, Request("list", "apps", "deployments", namespace="demo"))
    assert refused.value.message.startswith(f'deployments.apps is forbidden: User "{READER.name}" cannot list')
