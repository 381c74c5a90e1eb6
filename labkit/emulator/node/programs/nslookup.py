"""``nslookup`` inside a pod: the lookups the pod's resolver makes, printed as bind's nslookup prints them.

``kubectl exec … -- nslookup helloworld.sample`` is how a learner checks what a pod's DNS says (istio.md, failure
1: a remote-only service without the DNS proxy). The machine's nslookup would ask the machine's resolver, so the
node puts this program on the pod's ``PATH`` instead (DESIGN decision 8). It walks the pod's search list as the
pod's resolver does (``ndots:5``), asks the pod's resolver — the cluster DNS, or the sidecar's DNS proxy when the
pod has one — from the pod's IP, and prints::

    Server:		127.1.101.10
    Address:	127.1.101.10#53

    Name:	helloworld.sample.svc.cluster.local
    Address: 127.1.101.20

or ``** server can't find x: NXDOMAIN`` (exit code 1). A CNAME in the answer (the DNS proxy's shortcut for the
first search domain) prints as ``<alias>	canonical name = <name>.``, an answer that is not authoritative (a name
forwarded outside the cluster) under ``Non-authoritative answer:``. ``Server:`` names the pod's ``resolv.conf``
nameserver even when the DNS proxy answers, as on a real pod, where iptables redirects the query transparently.

Configuration comes from the wrapper the node writes: ``LABKIT_SHIM_NAMESERVER`` (the ``resolv.conf``
nameserver, ``ip:port``), ``LABKIT_SHIM_DNS`` (where queries go), ``LABKIT_SHIM_SEARCH``, ``LABKIT_SHIM_SOURCE``.
It runs without site-packages (like the curl shim), so DNS messages are built by hand.
"""

from __future__ import annotations

import os
import sys

if __package__:
    from .curl_shim import candidates, query
else:  # started by path without site-packages (how the node starts it): this folder is on sys.path
    from curl_shim import candidates, query

TIMEOUT = 2.0
RCODES = {1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def main(argv: list[str] | None = None) -> int:
    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if not args:
        sys.stderr.write("Usage: nslookup HOST\n")
        return 1
    env = os.environ
    nameserver = env.get("LABKIT_SHIM_NAMESERVER", "")
    host, _, port = nameserver.rpartition(":")
    asked_host, _, asked_port = (env.get("LABKIT_SHIM_DNS") or nameserver).rpartition(":")
    server = (asked_host, int(asked_port or 53))
    search = env.get("LABKIT_SHIM_SEARCH", "").split()
    source = env.get("LABKIT_SHIM_SOURCE", "")
    name = args[0]
    print(f"Server:\t\t{host}")
    print(f"Address:\t{host}#{port or 53}")
    print()
    failure = "NXDOMAIN"
    for candidate in candidates(name, search):
        result = query(candidate, server, source)
        if result is None:
            print(";; connection timed out; no servers could be reached")
            print()
            return 1
        rcode, authoritative, records = result
        addresses = [r for r in records if r[0] == "A"]
        if rcode == 0 and addresses:
            if not authoritative:
                print("Non-authoritative answer:")
            for kind, owner, value in records:
                if kind == "CNAME":
                    print(f"{owner}\tcanonical name = {value}.")
                else:
                    print(f"Name:\t{owner}")
                    print(f"Address: {value}")
            print()
            return 0
        if rcode not in (0, 3):
            failure = RCODES.get(rcode, str(rcode))
            break
    print(f"** server can't find {name.rstrip('.')}: {failure}")
    print()
    return 1


if __name__ == "__main__":
    sys.exit(main())
