"""What an identity may do: ``kubectl auth can-i`` and ``kubectl auth can-i --list``, from Python.

Security lessons are clearer as a table than as a refusal: a remote secret's token "can read every Secret" is
something to *see* (``secrets  []  []  [get list watch]``) before proving it by reading the CA key. Both helpers ask
the API server itself — a ``SelfSubjectAccessReview`` for one question, a ``SelfSubjectRulesReview`` for the whole
list — with whichever credentials the kubeconfig carries, so they answer for the token under test, on real and
embedded clusters alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes.client.rest import ApiException

from labkit.core.wire import Obj
from labkit.kube.clients import client_for, raise_api_error
from labkit.kube.contexts import ContextRef


@dataclass(frozen=True)
class AccessRule:
    """One row of ``kubectl auth can-i --list``: a policy rule as RBAC writes it.

    Args:
        verbs: ``get``, ``list`` …
        api_groups: the API groups (``""`` for the core group).
        resources: the resources (plural).
        resource_names: the names the rule is limited to; empty for all.
        non_resource_urls: paths such as ``/healthz`` (for non-resource rules).
    """

    verbs: tuple[str, ...]
    api_groups: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    resource_names: tuple[str, ...] = ()
    non_resource_urls: tuple[str, ...] = ()

    def cells(self) -> tuple[str, str, str, str]:
        """The row as kubectl prints it: ``secrets  []  []  [get list watch]``."""
        resource = ""
        if self.resources:
            name, _, sub = self.resources[0].partition("/")
            group = self.api_groups[0] if self.api_groups else ""
            resource = name + (f".{group}" if group else "") + (f"/{sub}" if sub else "")
        return resource, _go(self.non_resource_urls), _go(self.resource_names), _go(self.verbs)

    def _sort_key(self) -> str:
        # kubectl sorts by the rule's protobuf String(), which starts with the verbs.
        return (f"&PolicyRule{{Verbs:{_go(self.verbs)},APIGroups:{_go(self.api_groups)},"
                f"Resources:{_go(self.resources)},ResourceNames:{_go(self.resource_names)},"
                f"NonResourceURLs:{_go(self.non_resource_urls)},}}")


def _go(values: tuple[str, ...]) -> str:
    # Go's %v of a []string.
    return f"[{' '.join(values)}]"


@dataclass(frozen=True)
class AccessRules:
    """The rules an identity holds in one namespace, printed as ``kubectl auth can-i --list`` prints them."""

    namespace: str
    rules: tuple[AccessRule, ...]
    incomplete: bool = False

    def allows(self, verb: str, resource: str, group: str = "") -> bool:
        """Whether some rule grants ``verb`` on every ``resource`` of ``group`` (``*`` wildcards count)."""
        return any(({verb, "*"} & set(rule.verbs)) and ({group, "*"} & set(rule.api_groups))
                   and ({resource, "*"} & set(rule.resources)) and not rule.resource_names for rule in self.rules)

    def __str__(self) -> str:
        rows = [("Resources", "Non-Resource URLs", "Resource Names", "Verbs"), *(r.cells() for r in self.rules)]
        # kubectl's tab writer: every cell but the last padded to the column's widest plus three (at least six).
        widths = [max(6, max(len(row[i]) for row in rows) + 3) for i in range(3)]
        return "\n".join("".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + row[3]
                         for row in rows)

    def _repr_pretty_(self, printer, cycle: bool) -> None:
        printer.text(str(self))


def _rows(status: Obj) -> tuple[AccessRule, ...]:
    """A rules review's status, broken down, compacted and sorted as kubectl does before printing it."""
    broken: list[AccessRule] = []
    for rule in status.get("resourceRules") or []:
        names = tuple(rule.get("resourceNames") or ())
        for group in rule.get("apiGroups") or ():
            for resource in rule.get("resources") or ():
                for verb in rule.get("verbs") or ():
                    broken += [AccessRule((verb,), (group,), (resource,), (name,)) for name in names] if names else \
                        [AccessRule((verb,), (group,), (resource,))]
    for rule in status.get("nonResourceRules") or []:
        for url in rule.get("nonResourceURLs") or ():
            broken += [AccessRule((verb,), non_resource_urls=(url,)) for verb in rule.get("verbs") or ()]
    # Rules about one resource (and at most one name) merge their verbs, first seen first.
    simple: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    other: list[AccessRule] = []
    for rule in broken:
        if rule.non_resource_urls:
            other.append(rule)
            continue
        verbs = simple.setdefault((rule.api_groups[0], rule.resources[0], rule.resource_names), [])
        verbs += [verb for verb in rule.verbs if verb not in verbs]
    compact = other + [AccessRule(tuple(verbs), (group,), (resource,), names)
                       for (group, resource, names), verbs in simple.items()]
    return tuple(sorted(compact, key=AccessRule._sort_key))


def access_rules(context: ContextRef, namespace: str = "default", *,
                 kubeconfig: Path | str | None = None) -> AccessRules:
    """``kubectl auth can-i --list -n <namespace>`` for the identity the kubeconfig's context carries.

    Args:
        context: the kubeconfig context (or a bound :class:`~labkit.kube.Context`).
        namespace: the namespace to list rules in (cluster-wide rules are included, as kubectl shows them).
        kubeconfig: the kubeconfig file; by default the context's own, ``KUBECONFIG`` or ``~/.kube/config``.
    """
    api = client_for(context, kubeconfig)
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace}}
    try:
        answer = client.AuthorizationV1Api(api).create_self_subject_rules_review(body)
    except ApiException as exc:
        raise_api_error(exc, f"asking {context} what this identity may do in {namespace}")
    status: Obj = api.sanitize_for_serialization(answer).get("status") or {}
    return AccessRules(namespace, _rows(status), bool(status.get("incomplete")))


def can_i(context: ContextRef, verb: str, resource: str, namespace: str | None = None, *, group: str = "",
          name: str = "", kubeconfig: Path | str | None = None) -> bool:
    """``kubectl auth can-i <verb> <resource>``: whether the API server would allow it, asked of the server.

    Args:
        context: the kubeconfig context (or a bound :class:`~labkit.kube.Context`).
        verb: ``get``, ``list``, ``create`` …
        resource: the resource (plural), e.g. ``secrets``.
        namespace: the namespace; None for a cluster-wide question.
        group: the resource's API group (``""`` for the core group).
        name: one object's name, if the question is about it.
        kubeconfig: the kubeconfig file; by default the context's own, ``KUBECONFIG`` or ``~/.kube/config``.
    """
    api = client_for(context, kubeconfig)
    attributes = {"verb": verb, "resource": resource, "group": group, "name": name}
    if namespace:
        attributes["namespace"] = namespace
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attributes}}
    try:
        answer = client.AuthorizationV1Api(api).create_self_subject_access_review(body)
    except ApiException as exc:
        raise_api_error(exc, f"asking {context} whether this identity may {verb} {resource}")
    return bool((api.sanitize_for_serialization(answer).get("status") or {}).get("allowed"))
