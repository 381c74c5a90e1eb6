"""``labkit/whoami``: a service that says who it is and who called it (Lab 4's svc-1, svc-2 and svc-3).

Federating a service across clusters is only convincing when the answer shows both ends: which service in
which cluster answered, and which identity the caller presented. The caller's identity is what the server's
sidecar verified in the mTLS handshake; Envoy hands it to the application in ``X-Forwarded-Client-Cert``
(``By=<server>;Hash=…;Subject="";URI=spiffe://…/ns/foo/sa/svc-1``; the last element is the nearest peer).
A call that did not arrive over mesh mTLS has no such header, and the answer says so.

``GET <any path>`` → ``svc-2 in cluster2 (pod svc-2-5c7d…), called by spiffe://cluster.local/ns/foo/sa/svc-1``.
The name and cluster come from ``SERVICE_NAME`` and ``CLUSTER_NAME`` (set in the Deployment), the pod from
``HOSTNAME``; it listens on ``PORT`` (8000 by default).
"""

from __future__ import annotations

import os

if __package__:
    from . import _serving
else:  # started by path without site-packages (how the node starts it): this folder is on sys.path
    import _serving

TEXT = [("Content-Type", "text/plain; charset=utf-8")]
NO_IDENTITY = "(no client certificate)"


def caller(xfcc: str) -> str:
    """The SPIFFE ID of the nearest peer in an ``X-Forwarded-Client-Cert`` value, or :data:`NO_IDENTITY`."""
    if not xfcc.strip():
        return NO_IDENTITY
    nearest = xfcc.rsplit(",", maxsplit=1)[-1]
    for part in nearest.split(";"):
        key, _, value = part.strip().partition("=")
        if key.upper() == "URI" and value:
            return value.strip('"')
    return NO_IDENTITY


def handle(request: _serving.Request) -> _serving.Response:
    name = os.environ.get("SERVICE_NAME", "whoami")
    cluster = os.environ.get("CLUSTER_NAME", "?")
    pod = os.environ.get("HOSTNAME", "")
    who = caller(request.header("X-Forwarded-Client-Cert"))
    return 200, TEXT, f"{name} in {cluster} (pod {pod}), called by {who}\n".encode()


def main() -> None:
    _serving.run(handle, default_port=int(os.environ.get("PORT") or 8000), server="whoami")


if __name__ == "__main__":
    main()
