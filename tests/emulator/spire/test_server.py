"""The spire-server program run as a process, and its CLI printing what SPIRE 1.5 prints.

Two servers (foo.com, bar.com) federate as in Lab 5: each serves its bundle endpoint, the first foreign bundle is
given with ``bundle set``, later ones are fetched and authenticated by it.
"""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labkit.emulator.node.images import SOURCE_ROOT
from labkit.emulator.spire import cli
from labkit.pki import describe
from labkit.testing import eventually


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CONFIG = """
server {{
  bind_address = "0.0.0.0"
  bind_port = "{api}"
  trust_domain = "{domain}"
  data_dir = "/run/spire/data"
  ca_subject = {{ country = ["US"], organization = ["SPIFFE"], common_name = "" }}
  federation {{
    bundle_endpoint {{ address = "0.0.0.0"  port = {endpoint}  refresh_hint = "1s" }}
    federates_with "{peer}" {{
      bundle_endpoint_url = "https://127.0.0.1:{peer_endpoint}"
      bundle_endpoint_profile "https_spiffe" {{ endpoint_spiffe_id = "spiffe://{peer}/spire/server" }}
    }}
  }}
}}
plugins {{
  DataStore "sql" {{ plugin_data {{ database_type = "sqlite3" }} }}
  UpstreamAuthority "cert-manager" {{ plugin_data {{ issuer_name = "spire-ca" namespace = "spire" }} }}
}}
"""


@dataclass
class Server:
    domain: str
    root: Path
    process: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str, stdin: str = "") -> tuple[int, str, str]:
        """``kubectl exec spire-server-0 -- spire-server …``: the CLI with the pod's folder as its root."""
        out, err = io.StringIO(), io.StringIO()
        saved = os.environ.get("HOME")
        os.environ["HOME"] = str(self.root)
        try:
            code = cli.main(list(args), out, err, io.StringIO(stdin))
        finally:
            if saved is None:
                del os.environ["HOME"]
            else:
                os.environ["HOME"] = saved
        return code, out.getvalue(), err.getvalue()

    def log(self) -> str:
        return (self.root / "server.log").read_text()


def _start(server: Server) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(server.root), "POD_IP": "127.0.0.1",
           "HOSTNAME": "spire-server-0", "PYTHONPATH": str(SOURCE_ROOT)}
    log = (server.root / "server.log").open("wb")
    server.process = subprocess.Popen(
        [sys.executable, "-s", "-m", "labkit.emulator.spire.server", "-config", "/run/spire/config/server.conf"],
        cwd=server.root, env=env, stdout=log, stderr=subprocess.STDOUT)
    log.close()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    base = tmp_path_factory.mktemp("pods")
    ports = {d: (_free_port(), _free_port()) for d in ("foo.com", "bar.com")}
    found: dict[str, Server] = {}
    for domain, peer in (("foo.com", "bar.com"), ("bar.com", "foo.com")):
        root = base / f"spire-{domain}_spire-server-0_uid-{domain}"
        (root / "run/spire/config").mkdir(parents=True)
        (root / "run/spire/config/server.conf").write_text(CONFIG.format(
            api=ports[domain][0], domain=domain, endpoint=ports[domain][1], peer=peer, peer_endpoint=ports[peer][1]))
        found[domain] = Server(domain, root)
        _start(found[domain])
    try:
        for server in found.values():
            eventually(lambda s=server: s.cli("healthcheck")[0] == 0, timeout=30, what=f"{server.domain} healthy")
        yield found
    finally:
        for server in found.values():
            assert server.process is not None
            server.process.terminate()
            server.process.wait(10)


def test_healthcheck_says_what_spire_says(servers: dict[str, Server], tmp_path: Path) -> None:
    assert servers["foo.com"].cli("healthcheck") == (0, "Server is healthy.\n", "")
    nowhere = Server("none", tmp_path)
    assert nowhere.cli("healthcheck") == (1, "", "Error: server is unhealthy: unable to determine health\n")


def test_entry_create_then_show_lays_out_the_entry_as_spire_1_5(servers: dict[str, Server]) -> None:
    foo = servers["foo.com"]
    code, out, err = foo.cli("entry", "create", "-spiffeID", "spiffe://foo.com/ns/sleep/sa/sleep",
                             "-parentID", "spiffe://foo.com/k8s-workload-registrar/cluster-1/node/node-1",
                             "-selector", "k8s:ns:sleep", "-selector", "k8s:pod-uid:1234", "-selector",
                             "k8s:node-name:node-1", "-federatesWith", "spiffe://bar.com", "-dns", "sleep-abc")
    assert (code, err) == (0, "")
    entry_id = re.search(r"^Entry ID         : (\S+)$", out, re.M).group(1)  # type: ignore[union-attr]
    expected = (
        f"Entry ID         : {entry_id}\n"
        "SPIFFE ID        : spiffe://foo.com/ns/sleep/sa/sleep\n"
        "Parent ID        : spiffe://foo.com/k8s-workload-registrar/cluster-1/node/node-1\n"
        "Revision         : 0\n"
        "X509-SVID TTL    : default\n"
        "JWT-SVID TTL     : default\n"
        "Selector         : k8s:node-name:node-1\n"
        "Selector         : k8s:ns:sleep\n"
        "Selector         : k8s:pod-uid:1234\n"
        "FederatesWith    : bar.com\n"
        "DNS name         : sleep-abc\n\n")
    assert out == expected
    shown = foo.cli("entry", "show", "-spiffeID", "spiffe://foo.com/ns/sleep/sa/sleep")
    assert shown == (0, "Found 1 entry\n" + expected, "")
    assert foo.cli("entry", "show", "-spiffeID", "spiffe://foo.com/ns/nobody/sa/nobody") == (0, "Found 0 entries\n", "")


def test_a_second_identical_entry_is_refused_with_spires_words(servers: dict[str, Server]) -> None:
    foo = servers["foo.com"]
    args = ("entry", "create", "-spiffeID", "spiffe://foo.com/twice", "-parentID", "spiffe://foo.com/spire/server",
            "-selector", "k8s:ns:twice")
    assert foo.cli(*args)[0] == 0
    code, out, err = foo.cli(*args)
    assert code == 1 and out == ""
    assert err.startswith('Failed to create the following entry (code: AlreadyExists, msg: "similar entry already '
                          'exists"):\nEntry ID         : (none)\n')
    assert err.endswith("Error: failed to create one or more entries\n")
    assert foo.cli("entry", "create", "-spiffeID", "spiffe://foo.com/x") == \
        (1, "", "Error: at least one selector is required\n")


def test_bundle_show_prints_the_cert_manager_root_as_pem_or_a_spiffe_bundle(servers: dict[str, Server]) -> None:
    code, pem, _ = servers["foo.com"].cli("bundle", "show")
    assert code == 0
    (root,) = describe(pem)
    assert root.subject == root.issuer == "O=cert-manager, CN=certmanager-ca"
    code, text, _ = servers["foo.com"].cli("bundle", "show", "-format", "spiffe")
    document = json.loads(text)
    assert text.startswith('{\n    "keys": [\n        {\n            "use": "x509-svid",')  # Go's json.Indent, 4
    assert [key["use"] for key in document["keys"]] == ["x509-svid", "jwt-svid"]
    assert document["spiffe_sequence"] == 1 and document["spiffe_refresh_hint"] == 1


def test_federation_starts_with_bundle_set_then_fetches_authenticated_by_it(servers: dict[str, Server]) -> None:
    foo, bar = servers["foo.com"], servers["bar.com"]
    assert foo.cli("bundle", "list") == (0, "", "")  # nothing until a bundle is set
    bar_bundle = json.loads(bar.cli("bundle", "show", "-format", "spiffe")[1])
    handed_over = dict(bar_bundle, spiffe_sequence=0)  # an older copy: the fetch must replace it
    assert foo.cli("bundle", "set", "-format", "spiffe", "-id", "spiffe://bar.com",
                   stdin=json.dumps(handed_over)) == (0, "bundle set.\n", "")

    def fetched() -> bool:
        code, out, _ = foo.cli("bundle", "list", "-format", "spiffe")
        assert code == 0 and out.startswith("****************************************\n* spiffe://bar.com\n"
                                            "****************************************\n{")
        return json.loads(out.split("****************************************\n", 2)[2])["spiffe_sequence"] == 1
    eventually(fetched, timeout=15, what="foo.com's copy of bar.com's bundle fetched from bar.com's endpoint")


def test_an_endpoint_not_signed_by_the_held_bundle_is_refused(servers: dict[str, Server]) -> None:
    foo, bar = servers["foo.com"], servers["bar.com"]
    # bar.com is told that foo.com's root is foo.com's bundle: foo.com's real endpoint then fails to authenticate.
    bar_root = bar.cli("bundle", "show")[1]
    assert bar.cli("bundle", "set", "-id", "spiffe://foo.com", stdin=bar_root) == (0, "bundle set.\n", "")
    eventually(lambda: "Error updating bundle for trust domain foo.com" in bar.log() and
               "is not signed by the foo.com bundle held" in bar.log(), timeout=15, what="the refusal logged")
    assert bar.cli("bundle", "list", "-id", "spiffe://foo.com")[1] == bar_root  # the wrong one stays, unreplaced
    foo_root = foo.cli("bundle", "show")[1]
    assert foo_root != bar_root


def test_a_bundle_entries_federate_with_is_deleted_only_when_asked_how(servers: dict[str, Server]) -> None:
    foo = servers["foo.com"]
    eventually(lambda: foo.cli("bundle", "list", "-id", "spiffe://bar.com")[0] == 0, 15, "bar.com's bundle held")
    assert foo.cli("entry", "show", "-federatesWith", "spiffe://bar.com")[1].startswith("Found 1 entry\n")
    assert foo.cli("bundle", "delete", "-id", "spiffe://bar.com") == (
        1, "", 'Error: failed to delete federated bundle "bar.com": datastore-sql: cannot delete bundle; federated '
               'with 1 registration entries\n')
    assert foo.cli("bundle", "delete", "-id", "spiffe://bar.com", "-mode", "dissociate") == \
        (0, "bundle deleted.\n", "")
    assert foo.cli("bundle", "list") == (0, "", "")
    _, out, _ = foo.cli("entry", "show", "-spiffeID", "spiffe://foo.com/ns/sleep/sa/sleep")
    assert "FederatesWith" not in out and "Revision         : 1\n" in out


def test_the_servers_own_trust_domain_cannot_be_set_as_federated(servers: dict[str, Server]) -> None:
    foo = servers["foo.com"]
    own = foo.cli("bundle", "show")[1]
    assert foo.cli("bundle", "set", "-id", "spiffe://foo.com", stdin=own) == (
        1, "", "Error: failed to set federated bundle: setting a federated bundle for the server's own trust "
               "domain is not allowed\n")


def test_agent_list_before_any_agent_attested(servers: dict[str, Server]) -> None:
    assert servers["bar.com"].cli("agent", "list") == (0, "No attested agents found\n", "")
