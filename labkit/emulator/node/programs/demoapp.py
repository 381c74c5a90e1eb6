"""Lab 2's demo application: ``dashboard`` composes a person's ``profile`` (name) and ``accounts`` (balance).

Three images, one program (``DEMO_ROLE`` comes from the image, see :mod:`labkit.emulator.node.images`):

- ``labkit/demo-profile`` — ``GET /profile/<id>`` → ``{"id", "name", "instance", "node"}``;
- ``labkit/demo-accounts`` — ``GET /accounts/<id>`` → ``{"id", "balance", "currency", "instance", "node"}``;
- ``labkit/demo-dashboard`` — ``GET /dashboard/<id>`` calls both (``PROFILE_URL``, ``ACCOUNTS_URL``; by default
  ``http://profile:8080`` and ``http://accounts:8080``, through the pod's sidecar like any client) and answers
  ``{"id", "name", "balance", "currency", "served_by": {"dashboard": …, "profile": …, "accounts": …}}``,
  where each part names the pod (``instance``, the pod name a container runtime puts in ``HOSTNAME``) and its
  node (``NODE_NAME`` from the downward API) that served it. A part that fails makes a 502 naming the part
  and the reason, so a learner sees *which* hop broke.

Every role answers ``GET /health``. All listen on 8080 (``SERVICE_PORT`` moves it).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

if __package__:
    from . import _serving
else:  # started by path without site-packages (how the node starts it): this folder is on sys.path
    import _serving

JSON = [("Content-Type", "application/json")]
PORT = 8080
PEOPLE = {
    1: ("Ada Lovelace", 1815.12), 2: ("Alan Turing", 1912.06), 3: ("Grace Hopper", 1906.12),
    4: ("Katherine Johnson", 1918.08), 5: ("Edsger Dijkstra", 1930.05), 6: ("Barbara Liskov", 1939.11),
    7: ("Donald Knuth", 1938.01), 8: ("Margaret Hamilton", 1936.08), 9: ("Dennis Ritchie", 1941.09),
}
CALL_TIMEOUT = 5.0


def _me() -> dict[str, str]:
    return {"instance": os.environ.get("HOSTNAME", ""), "node": os.environ.get("NODE_NAME", "")}


def _answer(status: int, body: dict) -> _serving.Response:
    return status, JSON, (json.dumps(body) + "\n").encode()


def _person(path: str, prefix: str) -> int | None:
    tail = path.removeprefix(prefix)
    return int(tail) if path.startswith(prefix) and tail.isdigit() else None


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as reply:
        return json.loads(reply.read())


def _part(name: str, url: str) -> tuple[dict | None, str]:
    try:
        return _get(url), ""
    except urllib.error.HTTPError as exc:
        return None, f"{name}: HTTP {exc.code} {exc.read().decode(errors='replace').strip()}"
    except (OSError, ValueError) as exc:
        return None, f"{name}: {exc}"


def handle(request: _serving.Request) -> _serving.Response:
    role = os.environ.get("DEMO_ROLE", "profile")
    if request.method not in {"GET", "HEAD"}:
        return _answer(405, {"error": f"{request.method} not allowed"})
    if request.path == "/health":
        return _answer(200, {"status": "ok", "role": role})
    person = _person(request.path, f"/{role}/")
    if person is None:
        return _answer(404, {"error": f"no route for {request.path}; try GET /{role}/<id>"})
    if person not in PEOPLE:
        return _answer(404, {"error": f"no person with id {person}", **_me()})
    name, balance = PEOPLE[person]
    if role == "profile":
        return _answer(200, {"id": person, "name": name, **_me()})
    if role == "accounts":
        return _answer(200, {"id": person, "balance": balance, "currency": "USD", **_me()})
    profile, problem = _part("profile", f"{os.environ.get('PROFILE_URL', 'http://profile:8080')}/profile/{person}")
    accounts, problem2 = _part("accounts",
                               f"{os.environ.get('ACCOUNTS_URL', 'http://accounts:8080')}/accounts/{person}")
    if profile is None or accounts is None:
        return _answer(502, {"error": "; ".join(p for p in (problem, problem2) if p), **_me()})
    served_by = {"dashboard": _me(),
                 "profile": {k: profile.get(k, "") for k in ("instance", "node")},
                 "accounts": {k: accounts.get(k, "") for k in ("instance", "node")}}
    return _answer(200, {"id": person, "name": profile.get("name"), "balance": accounts.get("balance"),
                         "currency": accounts.get("currency"), "served_by": served_by})


def main() -> None:
    port = int(os.environ.get("SERVICE_PORT") or PORT)
    _serving.run(handle, default_port=port, server="demo-app")


if __name__ == "__main__":
    main()
