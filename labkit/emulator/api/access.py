"""Authorization you can see: impersonation and the review APIs behind ``kubectl auth``.

The security lessons of the labs are demonstrations: "this reader token can list secrets but not create
a ConfigMap" (``kubectl auth can-i … --as=system:serviceaccount:…``), "this is who the token says I am"
(``kubectl auth whoami``), "here is a token for that service account" (``kubectl create token``). Each
works as on a real API server:

* :func:`impersonate` turns ``Impersonate-User``/``-Group``/``-Uid``/``-Extra-*`` (kubectl's ``--as``, ``--as-group``)
  into the user the request runs as, after checking that the real caller holds the ``impersonate`` verb
  on ``users``, ``groups`` or ``serviceaccounts`` for each name, in Kubernetes' words when it does not;
* :func:`review` answers the create-only review resources: ``SelfSubjectAccessReview`` (``auth can-i``),
  ``SubjectAccessReview``, ``SelfSubjectRulesReview`` (``auth can-i --list``), ``SelfSubjectReview``
  (``auth whoami``) and ``TokenReview``, all from the same RBAC the requests themselves meet.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from labkit.core.wire import Obj
from labkit.emulator.api.auth import AUTHENTICATED, Authenticator, Authorizer, Request, User, service_account_user
from labkit.emulator.apimachinery import status

_SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
_EXTRA_PREFIX = "impersonate-extra-"

REVIEWS: frozenset[tuple[str, str]] = frozenset({
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authentication.k8s.io", "tokenreviews"),
})
"""``(group, plural)`` of the review resources :func:`review` answers."""


def impersonate(user: User, headers: Mapping[str, str], authorizer: Authorizer) -> User:
    """The user a request runs as: ``user``, or whom it impersonates when it may.

    Args:
        user: the authenticated caller.
        headers: the request headers (multi-valued ``Impersonate-Group`` included; an aiohttp
            ``CIMultiDictProxy`` has ``getall``).
        authorizer: decides whether ``user`` may impersonate each name.

    Raises:
        StatusError: 403 naming what the caller may not impersonate, 400 for groups without a user.
    """
    name = headers.get("Impersonate-User", "")
    getall = getattr(headers, "getall", None)
    groups = [str(g) for g in getall("Impersonate-Group", [])] if getall else \
        [g for g in [headers.get("Impersonate-Group", "")] if g]
    uid = headers.get("Impersonate-Uid", "")
    extras = sorted({key[len(_EXTRA_PREFIX):].lower() for key in headers if key.lower().startswith(_EXTRA_PREFIX)})
    if not name:
        if groups or uid or extras:
            raise status.bad_request(f"requested {groups or [uid] if groups or uid else extras} without "
                                     f"impersonating a user")
        return user
    account = _service_account(name)
    if account is not None:
        authorizer.authorize(user, Request("impersonate", "", "serviceaccounts", namespace=account[0],
                                           name=account[1]))
    else:
        authorizer.authorize(user, Request("impersonate", "", "users", name=name))
    for group in groups:
        authorizer.authorize(user, Request("impersonate", "", "groups", name=group))
    if uid:
        authorizer.authorize(user, Request("impersonate", "authentication.k8s.io", "uids", name=uid))
    for key in extras:
        for value in (getall(f"{_EXTRA_PREFIX}{key}", []) if getall else [headers.get(f"{_EXTRA_PREFIX}{key}", "")]):
            authorizer.authorize(user, Request("impersonate", "authentication.k8s.io", "userextras", key,
                                               name=str(value)))
    if account is not None and not groups:
        return service_account_user(account[0], account[1], uid)
    if name != "system:anonymous" and AUTHENTICATED not in groups:
        groups.append(AUTHENTICATED)
    return User(name, tuple(groups), account, uid)


def _service_account(name: str) -> tuple[str, str] | None:
    if not name.startswith(_SERVICE_ACCOUNT_PREFIX):
        return None
    namespace, _, account = name.removeprefix(_SERVICE_ACCOUNT_PREFIX).partition(":")
    return (namespace, account) if namespace and account else None


def review(group: str, plural: str, body: Obj, user: User, authorizer: Authorizer,
           authenticator: Authenticator) -> Obj:
    """The answer to a review: the submitted object with its ``status`` filled in.

    Args:
        group: the review's API group.
        plural: the review's resource (``selfsubjectaccessreviews`` …).
        body: the submitted review.
        user: who asks (after impersonation).
        authorizer: the cluster's RBAC.
        authenticator: the cluster's token checks (``TokenReview``).
    """
    answer = copy.deepcopy(body)
    answer.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    spec = answer.setdefault("spec", {})
    if plural == "selfsubjectaccessreviews":
        answer["status"] = _access(authorizer, user, spec)
    elif plural == "subjectaccessreviews":
        if not spec.get("user") and not spec.get("groups"):
            raise status.invalid("SubjectAccessReview", "", [("spec.user", "Invalid value: \"\": at least one of "
                                                             "user or group must be specified")], group)
        subject = User(spec.get("user", ""), tuple(spec.get("groups") or ()), _service_account(spec.get("user", "")),
                       spec.get("uid", ""))
        answer["status"] = _access(authorizer, subject, spec)
    elif plural == "selfsubjectrulesreviews":
        answer["status"] = _rules(authorizer, user, spec.get("namespace") or "")
    elif plural == "selfsubjectreviews":
        answer.pop("spec", None)
        answer["status"] = {"userInfo": _user_info(user)}
    else:
        answer["status"] = _token_review(authenticator, spec)
    return answer


def _access(authorizer: Authorizer, user: User, spec: Obj) -> Obj:
    resource = spec.get("resourceAttributes")
    if resource:
        request = Request(resource.get("verb", ""), resource.get("group", ""), resource.get("resource", ""),
                          resource.get("subresource", ""), resource.get("namespace", ""), resource.get("name", ""))
    else:
        non_resource = spec.get("nonResourceAttributes") or {}
        request = Request(non_resource.get("verb", ""), path=non_resource.get("path", ""))
    if authorizer.allows(user, request):
        return {"allowed": True, "reason": "RBAC: allowed"}
    return {"allowed": False}


def _rules(authorizer: Authorizer, user: User, namespace: str) -> Obj:
    resource_rules: list[Obj] = []
    non_resource_rules: list[Obj] = []
    for rule in authorizer.rules(user, namespace):
        if rule.get("nonResourceURLs"):
            non_resource_rules.append({"verbs": list(rule.get("verbs") or []),
                                       "nonResourceURLs": list(rule["nonResourceURLs"])})
        else:
            item = {"verbs": list(rule.get("verbs") or []), "apiGroups": list(rule.get("apiGroups") or []),
                    "resources": list(rule.get("resources") or [])}
            if rule.get("resourceNames"):
                item["resourceNames"] = list(rule["resourceNames"])
            resource_rules.append(item)
    return {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": False}


def _user_info(user: User) -> Obj:
    info: Obj = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    info["groups"] = list(user.groups)
    return info


def _token_review(authenticator: Authenticator, spec: Obj) -> Obj:
    token = str(spec.get("token") or "")
    found, audiences = authenticator.review(token, spec.get("audiences") or ())
    if found is None:
        return {"authenticated": False, "user": {}, "error": "[invalid bearer token, service account token has "
                                                             "been invalidated]"}
    return {"authenticated": True, "user": _user_info(found), "audiences": audiences}
