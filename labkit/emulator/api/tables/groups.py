"""Printers of the smaller groups the labs list: ``discovery.k8s.io``, ``events.k8s.io``, RBAC bindings,
``coordination.k8s.io`` leases and ``admissionregistration.k8s.io`` webhook configurations.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .cells import AGE, NAME, Column, Obj, Printer, age_of, name_of, spec_of, with_more
from .core import EVENT_COLUMNS, event_cells


def _endpoint_slice_cells(endpoint_slice: Obj, now: dt.datetime) -> list[Any]:
    ports = []
    for port in endpoint_slice.get("ports") or ():
        number = port.get("port")
        ports.append(str(number) if number is not None else str(port.get("name") or "*"))
    addresses = [str(address) for endpoint in endpoint_slice.get("endpoints") or ()
                 for address in endpoint.get("addresses") or ()]
    return [name_of(endpoint_slice), str(endpoint_slice.get("addressType", "")),
            with_more(ports[:3], len(ports), 3, "<unset>"),
            with_more(addresses[:3], len(addresses), 3, "<unset>"), age_of(endpoint_slice, now)]


def _binding_cells(binding: Obj, now: dt.datetime) -> list[Any]:
    role_ref = binding.get("roleRef") or {}
    users: list[str] = []
    groups: list[str] = []
    accounts: list[str] = []
    for subject in binding.get("subjects") or ():
        if subject.get("kind") == "User":
            users.append(str(subject.get("name", "")))
        elif subject.get("kind") == "Group":
            groups.append(str(subject.get("name", "")))
        elif subject.get("kind") == "ServiceAccount":
            accounts.append(f"{subject.get('namespace', '')}/{subject.get('name', '')}")
    return [name_of(binding), f"{role_ref.get('kind', '')}/{role_ref.get('name', '')}", age_of(binding, now),
            ", ".join(users), ", ".join(groups), ", ".join(accounts)]


def _binding_columns(what: str) -> list[Column]:
    return [NAME, Column("Role", description="The role granted (kind/name)."), AGE,
            Column("Users", priority=1, description=f"Users in the {what}"),
            Column("Groups", priority=1, description=f"Groups in the {what}"),
            Column("ServiceAccounts", priority=1, description=f"ServiceAccounts in the {what}")]


def _lease_cells(lease: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(lease), str(spec_of(lease).get("holderIdentity") or ""), age_of(lease, now)]


def _webhook_cells(configuration: Obj, now: dt.datetime) -> list[Any]:
    return [name_of(configuration), len(configuration.get("webhooks") or ()), age_of(configuration, now)]


_WEBHOOK_COLUMNS = [NAME, Column("Webhooks", "integer", "Number of webhooks in this configuration."), AGE]


PRINTERS: dict[tuple[str, str], Printer] = {
    ("events.k8s.io", "Event"): (EVENT_COLUMNS, event_cells),
    ("discovery.k8s.io", "EndpointSlice"): ([NAME, Column("AddressType", description="IPv4, IPv6 or FQDN."),
                                             Column("Ports", description="The slice's ports."),
                                             Column("Endpoints", description="The slice's addresses."), AGE],
                                            _endpoint_slice_cells),
    ("rbac.authorization.k8s.io", "RoleBinding"): (_binding_columns("roleBinding"), _binding_cells),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (_binding_columns("clusterRoleBinding"),
                                                         _binding_cells),
    ("coordination.k8s.io", "Lease"): ([NAME, Column("Holder", description="The current holder's identity."),
                                        AGE], _lease_cells),
    ("admissionregistration.k8s.io", "MutatingWebhookConfiguration"): (_WEBHOOK_COLUMNS, _webhook_cells),
    ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration"): (_WEBHOOK_COLUMNS, _webhook_cells),
}
