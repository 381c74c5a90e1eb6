"""The ``spire-server`` commands attendees type in ``kubectl exec``, printing what SPIRE 1.5's CLI prints.

``entry show``, ``entry create``, ``entry delete``, ``bundle show``, ``bundle set``, ``bundle list``,
``bundle delete``, ``agent list`` and ``healthcheck`` talk to the server's private API on its Unix socket
(``-socketPath``, default ``/tmp/spire-server/private/api.sock`` inside the pod). Flags follow Go's ``flag``
package as SPIRE uses it (``-name value``, ``-name=value``, repeatable list flags); errors go to stderr as
``Error: <message>`` with exit status 1, as SPIRE's command adapter reports them.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sys
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from labkit.emulator.spire.config import DEFAULT_SOCKET
from labkit.emulator.spire.entries import (
    Entry,
    Selector,
    format_agents,
    format_entries,
    format_entry,
    trust_domain_name,
)
from labkit.emulator.spire.sockets import unix_address
from labkit.errors import PkiError, SpireError
from labkit.pki import TrustBundle

HEADER = "****************************************\n* {}\n****************************************\n"

# Flags of each command: name → whether it repeats (list) or is a boolean; everything else takes one value.
_FLAGS: dict[str, dict[str, str]] = {
    "entry show": {"entryID": "str", "parentID": "str", "spiffeID": "str", "selector": "list",
                   "federatesWith": "list", "downstream": "bool", "matchFederatesWithOn": "str",
                   "matchSelectorsOn": "str"},
    "entry create": {"parentID": "str", "spiffeID": "str", "ttl": "str", "x509SVIDTTL": "str", "jwtSVIDTTL": "str",
                     "data": "str", "selector": "list", "federatesWith": "list", "node": "bool", "admin": "bool",
                     "storeSVID": "bool", "downstream": "bool", "entryExpiry": "str", "dns": "list"},
    "entry delete": {"entryID": "str"},
    "bundle show": {"format": "str"},
    "bundle set": {"id": "str", "path": "str", "format": "str"},
    "bundle list": {"id": "str", "format": "str"},
    "bundle delete": {"id": "str", "mode": "str"},
    "healthcheck": {"shallow": "bool", "verbose": "bool"},
    "agent list": {"selector": "list", "attestationType": "str", "banned": "bool", "canReattest": "bool",
                   "expiresBefore": "str", "matchSelectorsOn": "str"},
}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """The private API, over the server's Unix socket."""

    def __init__(self, socket_path: str):
        self.socket_path = socket_path

    def call(self, method: str, path: str, body: str | None = None) -> tuple[int, Any]:
        fd = None
        connection = None
        try:
            address, fd = unix_address(_pod_path(self.socket_path))
            connection = _UnixConnection(address)
            connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
        except OSError as exc:
            reason = "no such file or directory" if isinstance(exc, FileNotFoundError) else \
                "connection refused" if isinstance(exc, ConnectionRefusedError) else str(exc)
            raise SpireError(f'rpc error: code = Unavailable desc = connection error: desc = "transport: error '
                             f'while dialing: dial unix {self.socket_path}: connect: {reason}"') from exc
        finally:
            if connection is not None:
                connection.close()
            if fd is not None:
                os.close(fd)
        return response.status, json.loads(data) if data else {}


def _pod_path(path: str) -> Path:
    """A container path inside the pod's folder (``HOME``): the CLI runs in the pod, whose ``/`` is that folder."""
    return Path(os.environ.get("HOME") or os.getcwd()) / path.lstrip("/")


def _parse(command: str, args: Sequence[str], err: TextIO) -> dict[str, Any] | None:
    spec = {**_FLAGS[command], "socketPath": "str"}
    values: dict[str, Any] = {name: [] for name, kind in spec.items() if kind == "list"}
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg.startswith("-") or arg in ("-", "--"):
            break
        name, equals, value = arg.lstrip("-").partition("=")
        kind = spec.get(name)
        if kind is None:
            err.write(f"flag provided but not defined: -{name}\n")
            _usage(command, spec, err)
            return None
        if kind == "bool":
            values[name] = value.lower() not in ("false", "0") if equals else True
        else:
            if not equals:
                index += 1
                if index >= len(args):
                    err.write(f"flag needs an argument: -{name}\n")
                    _usage(command, spec, err)
                    return None
                value = args[index]
            if kind == "list":
                values[name].append(value)
            else:
                values[name] = value
        index += 1
    return values


def _usage(command: str, spec: dict[str, str], err: TextIO) -> None:
    err.write(f"Usage of {command}:\n")
    for name in sorted(spec):
        err.write(f"  -{name}{'' if spec[name] == 'bool' else ' string'}\n")


def _format(values: dict[str, Any]) -> str:
    chosen = (values.get("format") or "pem").lower()
    if chosen not in ("pem", "spiffe"):
        raise SpireError(f'invalid format: "{chosen}"')
    return chosen


def _print_bundle(bundle: TrustBundle, chosen: str, out: TextIO) -> None:
    if chosen == "pem":
        out.write(bundle.pem)
    else:
        out.write(bundle.to_json(indent=4) + "\n")


def _checked(status: int, body: Any, prefix: str = "") -> Any:
    if status >= 400:
        raise SpireError(prefix + str(body.get("error", f"status {status}")))
    return body


def run(command: str, values: dict[str, Any], client: Client, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    """Run one command; return its exit status."""
    if command == "healthcheck":
        if values.get("verbose"):
            out.write("Checking server health...\n")
        try:
            status, body = client.call("GET", "/health")
        except SpireError as exc:
            if values.get("verbose"):
                err.write(f"Failed to check health: {exc}\n")
            raise SpireError("server is unhealthy: unable to determine health") from exc
        if status != 200 or body.get("status") != "SERVING":
            raise SpireError(f'server is unhealthy: server returned status "{body.get("status", "UNKNOWN")}"')
        out.write("Server is healthy.\n")
        return 0
    if command == "agent list":
        status, body = client.call("GET", "/agents")
        out.write(format_agents(_checked(status, body)["agents"]))
        return 0
    if command == "entry show":
        if values.get("entryID") and (values.get("parentID") or values.get("spiffeID") or values["selector"]):
            raise SpireError("the -entryID flag can't be combined with others")
        query: list[tuple[str, str]] = []
        for flag in ("entryID", "spiffeID", "parentID"):
            if values.get(flag):
                if flag != "entryID" and not str(values[flag]).startswith("spiffe://"):
                    label = "parent ID" if flag == "parentID" else "SPIFFE ID"
                    raise SpireError(f'error parsing {label} "{values[flag]}": scheme is missing or invalid')
                query.append((flag, values[flag]))
        for selector in values["selector"]:
            Selector.parse(selector)
            query.append(("selector", selector))
        query += [("federatesWith", trust_domain_name(d)) for d in values["federatesWith"]]
        status, body = client.call("GET", "/entries?" + urllib.parse.urlencode(query))
        if status == 404 and values.get("entryID"):
            raise SpireError(f"error fetching entry ID {values['entryID']}: rpc error: code = NotFound desc = "
                             f"entry not found")
        body = _checked(status, body)
        out.write(format_entries([Entry.from_dict(e) for e in body["entries"]]))
        return 0
    if command == "entry create":
        if not values.get("data"):
            if not values["selector"]:
                raise SpireError("at least one selector is required")
            if values.get("node") and values["federatesWith"]:
                raise SpireError("node entries can not federate")
            if not values.get("parentID") and not values.get("node"):
                raise SpireError("a parent ID is required if the node flag is not set")
            if not values.get("spiffeID"):
                raise SpireError("a SPIFFE ID is required")
        spiffe_id = values["spiffeID"]
        domain = spiffe_id.removeprefix("spiffe://").split("/", 1)[0]
        parent = f"spiffe://{domain}/spire/server" if values.get("node") else values["parentID"]
        entry = {"spiffe_id": spiffe_id, "parent_id": parent, "selectors": values["selector"],
                 "federates_with": values["federatesWith"], "dns_names": values["dns"],
                 "x509_svid_ttl": int(values.get("x509SVIDTTL") or values.get("ttl") or 0),
                 "jwt_svid_ttl": int(values.get("jwtSVIDTTL") or 0), "node": bool(values.get("node")),
                 "admin": bool(values.get("admin"))}
        status, body = client.call("POST", "/entries", json.dumps({"entries": [entry]}))
        body = _checked(status, body)
        failed = False
        for result in body["results"]:
            shown = Entry.from_dict({"entry_id": "", **result["entry"]})
            if result["status"]["code"] == "OK":
                out.write(format_entry(shown))
            else:
                failed = True
                err.write(f"Failed to create the following entry (code: {result['status']['code']}, "
                          f"msg: {json.dumps(result['status']['message'])}):\n")
                err.write(format_entry(shown))
        if failed:
            raise SpireError("failed to create one or more entries")
        return 0
    if command == "entry delete":
        if not values.get("entryID"):
            raise SpireError("an entry ID is required")
        status, body = client.call("DELETE", f"/entries/{urllib.parse.quote(values['entryID'])}")
        _checked(status, body, "failed to delete entry: ")
        out.write(f"Deleted entry with ID: {values['entryID']}\n")
        return 0
    if command == "bundle show":
        chosen = _format(values)
        status, body = client.call("GET", "/bundle")
        body = _checked(status, body)
        _print_bundle(TrustBundle.from_json(body["trust_domain"], body["bundle"]), chosen, out)
        return 0
    if command == "bundle set":
        if not values.get("id"):
            raise SpireError("id flag is required")
        chosen = _format(values)
        try:
            text = _pod_path(values["path"]).read_text() if values.get("path") else stdin.read()
        except OSError as exc:
            raise SpireError(f"unable to load bundle data: open {values['path']}: {exc.strerror.lower()}") from exc
        domain = trust_domain_name(values["id"])
        try:
            bundle = TrustBundle.from_json(domain, text) if chosen == "spiffe" else TrustBundle.from_pem(domain, text)
        except PkiError as exc:
            raise SpireError(f"unable to parse bundle data: {exc}") from exc
        status, body = client.call("PUT", f"/bundles/{domain}", bundle.to_json(indent=None))
        _checked(status, body, "failed to set federated bundle: ")
        out.write("bundle set.\n")
        return 0
    if command == "bundle list":
        chosen = _format(values)
        status, body = client.call("GET", "/bundles")
        bundles = _checked(status, body)["bundles"]
        if values.get("id"):
            domain = trust_domain_name(values["id"])
            matching = [b for b in bundles if b["trust_domain"] == domain]
            if not matching:
                raise SpireError('rpc error: code = NotFound desc = bundle not found')
            _print_bundle(TrustBundle.from_json(domain, matching[0]["bundle"]), chosen, out)
            return 0
        for index, item in enumerate(bundles):
            if index:
                out.write("\n")
            out.write(HEADER.format(f"spiffe://{item['trust_domain']}"))
            _print_bundle(TrustBundle.from_json(item["trust_domain"], item["bundle"]), chosen, out)
        return 0
    if command == "bundle delete":
        if not values.get("id"):
            raise SpireError("id is required")
        domain = trust_domain_name(values["id"])
        mode = values.get("mode") or "restrict"
        status, body = client.call("DELETE", f"/bundles/{domain}?mode={urllib.parse.quote(mode)}")
        _checked(status, body, f'failed to delete federated bundle "{domain}": ')
        out.write("bundle deleted.\n")
        return 0
    raise SpireError(f"unknown command {command!r}")


def main(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr, stdin: TextIO = sys.stdin) -> int:
    """``spire-server <command> [flags]``.

    Args:
        argv: the arguments after ``spire-server``.
        out: standard output.
        err: standard error.
        stdin: standard input (``bundle set`` reads the bundle from it).
    """
    words = list(argv)
    command = " ".join(words[:2]) if words and words[0] in ("entry", "bundle", "agent") else (words[0] if words else "")
    if command not in _FLAGS:
        err.write("Usage: spire-server [--version] [--help] <command> [<args>]\n\nAvailable commands are:\n")
        for name in sorted(_FLAGS):
            err.write(f"    {name}\n")
        return 127 if words else 1
    values = _parse(command, words[len(command.split()):], err)
    if values is None:
        return 1
    try:
        return run(command, values, Client(values.get("socketPath") or DEFAULT_SOCKET), out, err, stdin)
    except SpireError as exc:
        err.write(f"Error: {exc}\n")
        return 1
