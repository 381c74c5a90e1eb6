"""``security.istio.io``: the shapes and rules of PeerAuthentication and AuthorizationPolicy, after Istio's
``ValidatePeerAuthentication`` and ``ValidateAuthorizationPolicy``.

``mtls.mode: STRICTT`` matters more here than anywhere: a mode that silently fell back would leave a
namespace accepting plaintext while its owner believes it refuses it.
"""

from __future__ import annotations

from labkit.core.wire import Obj
from labkit.emulator.mesh.validation import common
from labkit.emulator.mesh.validation.shapes import LABELS, STRING, STRINGS, Enum, ListOf, MapOf, Message, Problem

SELECTOR = Message("WorkloadSelector", {"matchLabels": LABELS})
TARGET_REF = Message("PolicyTargetReference", {"group": STRING, "kind": STRING, "name": STRING, "namespace": STRING})
MTLS = Message("MutualTLS", {"mode": Enum("PeerAuthentication.MutualTLS.Mode",
                                          ("UNSET", "DISABLE", "PERMISSIVE", "STRICT"))})
PEER_AUTHENTICATION = Message("PeerAuthentication", {"selector": SELECTOR, "mtls": MTLS,
                                                     "portLevelMtls": MapOf(MTLS, key="uint32")})
SOURCE = Message("Source", {name: STRINGS for name in (
    "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces",
    "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks", "serviceAccounts", "notServiceAccounts")})
OPERATION = Message("Operation", {name: STRINGS for name in (
    "hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths")})
RULE = Message("Rule", {
    "from": ListOf(Message("From", {"source": SOURCE})), "to": ListOf(Message("To", {"operation": OPERATION})),
    "when": ListOf(Message("Condition", {"key": STRING, "values": STRINGS, "notValues": STRINGS}))})
AUTHORIZATION_POLICY = Message("AuthorizationPolicy", {
    "selector": SELECTOR, "targetRef": TARGET_REF, "targetRefs": ListOf(TARGET_REF), "rules": ListOf(RULE),
    "action": Enum("AuthorizationPolicy.Action", ("ALLOW", "DENY", "AUDIT", "CUSTOM")),
    "provider": Message("ExtensionProvider", {"name": STRING})},
    oneofs=(("selector", "targetRef", "targetRefs"),))

SHAPES = {"PeerAuthentication": PEER_AUTHENTICATION, "AuthorizationPolicy": AUTHORIZATION_POLICY}


def peer_authentication(spec: Obj, namespace: str) -> list[Problem]:
    problems: list[Problem] = []
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    port_level = spec.get("portLevelMtls")
    if not labels and port_level:
        problems.append(Problem("spec.portLevelMtls", "mesh/namespace peer authentication cannot have port level "
                                                      "mTLS", "add selector.matchLabels naming the workload"))
    if port_level is not None and not port_level:
        problems.append(Problem("spec.portLevelMtls", "port level mTLS, if defined, must have at least one element"))
    for port in port_level or {}:
        if str(port).isdigit() and not 1 <= int(port) <= 65535:
            problems.append(Problem(f"spec.portLevelMtls[{port}]", "port must be in range 1..65535"))
    problems += common.labels_problems(labels, "spec.selector.matchLabels")
    return problems


def authorization_policy(spec: Obj, namespace: str) -> list[Problem]:
    problems: list[Problem] = []
    action = spec.get("action") or "ALLOW"
    provider = spec.get("provider")
    if action == "CUSTOM" and not (provider or {}).get("name"):
        problems.append(Problem("spec.provider", "must specify provider when using CUSTOM action"))
    if action != "CUSTOM" and provider is not None:
        problems.append(Problem("spec.provider", "provider is only allowed with CUSTOM action"))
    for index, rule in enumerate(spec.get("rules") or ()):
        where = f"spec.rules[{index}]"
        for f_index, source in enumerate(rule.get("from") or ()):
            if not source.get("source"):
                problems.append(Problem(f"{where}.from[{f_index}]", "`from.source` must not be nil"))
        for t_index, target in enumerate(rule.get("to") or ()):
            operation = target.get("operation")
            if not operation:
                problems.append(Problem(f"{where}.to[{t_index}]", "`to.operation` must not be nil"))
                continue
            for name in ("ports", "notPorts"):
                for port in operation.get(name) or ():
                    if not str(port).isdigit() or not 1 <= int(port) <= 65535:
                        problems.append(Problem(f"{where}.to[{t_index}].operation.{name}",
                                                f"port number {port} must be in the range 1..65535"))
        for c_index, condition in enumerate(rule.get("when") or ()):
            if not condition.get("key"):
                problems.append(Problem(f"{where}.when[{c_index}].key", "`key` must not be empty"))
            if not condition.get("values") and not condition.get("notValues"):
                problems.append(Problem(f"{where}.when[{c_index}]", "at least one of values or notValues must be "
                                                                    "set for key " + str(condition.get("key", ""))))
    problems += common.labels_problems((spec.get("selector") or {}).get("matchLabels"), "spec.selector.matchLabels")
    return problems


RULES = {"PeerAuthentication": peer_authentication, "AuthorizationPolicy": authorization_policy}
