"""The name rules of the Kubernetes API, with the messages a real API server gives.

Most objects are named by a DNS-1123 subdomain; namespaces (and Istio's network names in labels) by a
DNS-1123 label, Services by a DNS-1035 label — their names become DNS labels and, upper-cased, environment
variable prefixes, so they may not start with a digit. The messages are Kubernetes' own
(``apimachinery/pkg/util/validation``), because a learner will paste them into a search engine.
"""

from __future__ import annotations

import re
from typing import NewType

ClusterName = NewType("ClusterName", str)
"""A cluster's name in a lab and in the mesh (``cluster1``): Istio's ``clusterName``, an embedded cluster's name,
the boxes of a lab's charts."""
ContextName = NewType("ContextName", str)
"""A kubeconfig context's name: how the client reaches a cluster. Equal to the :data:`ClusterName` on embedded
clusters; on real ones ``LABKIT_CONTEXTS`` maps one to the other."""

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(\.{_LABEL})*"
_DNS1035 = "[a-z]([-a-z0-9]*[a-z0-9])?"

_RULES = {
    "label": (re.compile(rf"^{_LABEL}$"), DNS1123_LABEL_MAX,
              "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
              f"start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
              f"validation is '{_LABEL}')"),
    "subdomain": (re.compile(rf"^{_SUBDOMAIN}$"), DNS1123_SUBDOMAIN_MAX,
                  "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                  "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                  rf"validation is '{_SUBDOMAIN}')"),
    "dns1035": (re.compile(rf"^{_DNS1035}$"), DNS1123_LABEL_MAX,
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                f"regex used for validation is '{_DNS1035}')"),
}

# Resources (group, plural) whose names follow a rule other than the DNS-1123 subdomain.
_NAME_RULES = {("", "namespaces"): "label", ("", "services"): "dns1035"}


def name_rule(group: str, plural: str) -> str:
    """Which rule names of a resource follow: ``subdomain`` (most), ``label`` or ``dns1035``.

    Args:
        group: the API group (``""`` for the core group).
        plural: the resource, e.g. ``services``.
    """
    return _NAME_RULES.get((group, plural), "subdomain")


def name_errors(value: str, rule: str = "subdomain") -> list[str]:
    """Why ``value`` is not a valid name under ``rule``, in Kubernetes' words; empty when it is valid.

    Args:
        value: the name.
        rule: ``subdomain``, ``label`` or ``dns1035`` (see :func:`name_rule`).
    """
    pattern, longest, explanation = _RULES[rule]
    errors = []
    if len(value) > longest:
        errors.append(f"must be no more than {longest} characters")
    if not pattern.match(value):
        errors.append(explanation)
    return errors


def is_dns1123_label(value: str) -> bool:
    """Whether ``value`` is a DNS-1123 label (a namespace, a port name, a network name)."""
    return not name_errors(value, "label")
