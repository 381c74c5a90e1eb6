"""Registration entries: who gets which SPIFFE ID, kept in the server's datastore and printed as the CLI prints them.

An entry maps selectors to a SPIFFE ID under a parent: the agent whose node matches the parent may issue the ID to a
workload whose attested selectors include all of the entry's. ``FederatesWith`` lists the foreign trust domains
whose bundles the workload receives next to its own.

The datastore is one JSON file in the server's ``data_dir`` (SPIRE keeps SQLite there): written whole and
atomically, read once at start. Only the server process writes it; the CLI and the agents go through the server's
APIs, as with SPIRE.

:func:`format_entry` lays an entry out as ``spire-server`` 1.5 does (labels padded to column 17, selectors and
FederatesWith sorted), since Lab 5 compares the output with the article's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from labkit.errors import SpireError


@dataclass(frozen=True, order=True)
class Selector:
    """``type:value``, e.g. ``k8s:ns:sleep`` is type ``k8s``, value ``ns:sleep``."""

    type: str
    value: str

    @classmethod
    def parse(cls, text: str) -> Selector:
        """Everything after the first ``:`` is the value, as SPIRE parses ``-selector``."""
        kind, colon, value = text.partition(":")
        if not colon:
            raise SpireError(f'selector "{text}" must be formatted as type:value')
        return cls(kind, value)

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True)
class Entry:
    """A registration entry.

    Args:
        entry_id: a UUID, set by the server.
        spiffe_id: the identity issued.
        parent_id: the agent (or node alias) allowed to issue it.
        selectors: what a workload (or node) must present.
        federates_with: trust domain names (``bar.com``) whose bundles go with the SVID.
        dns_names: DNS SANs of the SVID; the first one is also its ``CN``.
        x509_svid_ttl: 0 for the server default.
        jwt_svid_ttl: 0 for the server default.
        revision: bumped on every update.
        node: a node entry (parent is the server; selectors are node selectors).
        admin: may use the server's management APIs.
    """

    entry_id: str
    spiffe_id: str
    parent_id: str
    selectors: tuple[Selector, ...]
    federates_with: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    x509_svid_ttl: int = 0
    jwt_svid_ttl: int = 0
    revision: int = 0
    node: bool = False
    admin: bool = False

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        value["selectors"] = [str(s) for s in self.selectors]
        return value

    @classmethod
    def from_dict(cls, value: dict[str, Any]) -> Entry:
        fields = dict(value)
        fields["selectors"] = tuple(Selector.parse(s) for s in value.get("selectors") or ())
        for name in ("federates_with", "dns_names"):
            fields[name] = tuple(value.get(name) or ())
        return cls(**fields)

    def sort_key(self) -> tuple[Any, ...]:
        """SPIRE's entry order: SPIFFE ID, parent ID, TTLs, then selectors."""
        return (self.spiffe_id, self.parent_id, self.x509_svid_ttl, self.jwt_svid_ttl,
                tuple(sorted(self.selectors)))

    def same_registration(self, other: Entry) -> bool:
        """Whether two entries register the same thing (SPIRE refuses a second one: ``AlreadyExists``)."""
        return (self.spiffe_id, self.parent_id, sorted(self.selectors)) == \
            (other.spiffe_id, other.parent_id, sorted(other.selectors))


def trust_domain_name(text: str) -> str:
    """``spiffe://bar.com`` or ``bar.com`` → ``bar.com`` (``-federatesWith`` takes either)."""
    return text.removeprefix("spiffe://").rstrip("/")


def format_entry(entry: Entry) -> str:
    """One entry as ``spire-server entry show`` prints it, with the blank line that ends it."""
    lines = [
        f"Entry ID         : {entry.entry_id or '(none)'}",
        f"SPIFFE ID        : {entry.spiffe_id}",
        f"Parent ID        : {entry.parent_id}",
        f"Revision         : {entry.revision}",
        f"X509-SVID TTL    : {entry.x509_svid_ttl or 'default'}",
        f"JWT-SVID TTL     : {entry.jwt_svid_ttl or 'default'}",
    ]
    lines += [f"Selector         : {selector}" for selector in sorted(entry.selectors)]
    lines += [f"FederatesWith    : {domain}" for domain in sorted(entry.federates_with)]
    lines += [f"DNS name         : {name}" for name in entry.dns_names]
    if entry.admin:
        lines.append("Admin            : true")
    return "\n".join(lines) + "\n\n"


def format_agents(agents: dict[str, dict[str, Any]]) -> str:
    """``spire-server agent list`` as SPIRE 1.5 prints it (Go's time format for the expiry)."""
    if not agents:
        return "No attested agents found\n"
    count = len(agents)
    lines = [f"Found {count} attested {'agent' if count == 1 else 'agents'}:\n\n"]
    for agent_id, agent in sorted(agents.items()):
        expires = dt.datetime.fromtimestamp(int(agent.get("expires_at", 0)), dt.UTC)
        lines.append(f"SPIFFE ID         : {agent_id}\n"
                     f"Attestation type  : {agent.get('attestation_type', 'k8s_psat')}\n"
                     f"Expiration time   : {expires:%Y-%m-%d %H:%M:%S} +0000 UTC\n"
                     f"Serial number     : {agent.get('serial', '')}\n\n")
    return "".join(lines)


def format_entries(entries: Sequence[Entry]) -> str:
    """``Found N entries`` and each entry, in SPIRE's order."""
    count = len(entries)
    head = f"Found {count} {'entry' if count == 1 else 'entries'}\n"
    return head + "".join(format_entry(e) for e in sorted(entries, key=Entry.sort_key))


def matches(entry: Entry, *, spiffe_id: str = "", parent_id: str = "", selectors: Iterable[Selector] = (),
            federates_with: Iterable[str] = ()) -> bool:
    """``entry show``'s filters: exact IDs; selectors and FederatesWith as a superset match (SPIRE's default)."""
    if spiffe_id and entry.spiffe_id != spiffe_id:
        return False
    if parent_id and entry.parent_id != parent_id:
        return False
    if not set(selectors) <= set(entry.selectors):
        return False
    return {trust_domain_name(d) for d in federates_with} <= set(entry.federates_with)


@dataclass
class Datastore:
    """The entries and federated bundles of one server, persisted as one JSON file.

    Args:
        path: the file (``<data_dir>/datastore.json``).
    """

    path: Path
    entries: dict[str, Entry] = field(default_factory=dict)
    federated: dict[str, str] = field(default_factory=dict)  # trust domain → SPIFFE bundle JSON
    # attested agent ID → {"selectors": [...], "serial": decimal serial of its SVID, "expires_at": epoch seconds}
    agents: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> Datastore:
        store = cls(path)
        if path.exists():
            data = json.loads(path.read_text())
            store.entries = {e["entry_id"]: Entry.from_dict(e) for e in data.get("entries") or []}
            store.federated = dict(data.get("federated_bundles") or {})
            store.agents = dict(data.get("attested_nodes") or {})
        return store

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"entries": [e.to_dict() for e in self.entries.values()], "federated_bundles": self.federated,
                "attested_nodes": self.agents}
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        os.replace(temporary, self.path)

    def create(self, entry: Entry) -> Entry:
        """Store a new entry with a fresh ID.

        Raises:
            SpireError: the same registration exists (``AlreadyExists``, as SPIRE answers).
        """
        if any(existing.same_registration(entry) for existing in self.entries.values()):
            raise SpireError("similar entry already exists")
        created = replace(entry, entry_id=str(uuid.uuid4()), revision=0)
        self.entries[created.entry_id] = created
        self.save()
        return created

    def update(self, entry: Entry) -> Entry:
        """Replace an entry, bumping its revision."""
        updated = replace(entry, revision=self.entries[entry.entry_id].revision + 1)
        self.entries[entry.entry_id] = updated
        self.save()
        return updated

    def delete(self, entry_id: str) -> None:
        if self.entries.pop(entry_id, None) is not None:
            self.save()

    def find(self, **filters: Any) -> list[Entry]:
        return sorted((e for e in self.entries.values() if matches(e, **filters)), key=Entry.sort_key)
