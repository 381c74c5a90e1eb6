"""httpbin (``kennethreitz/httpbin`` on :80, ``mccutchen/go-httpbin`` on :8080): echo what arrived.

Used to show what a request looks like after the mesh touched it (headers Envoy adds, the client
identity in ``X-Forwarded-Client-Cert``), to force status codes for retry and outlier demos, and to
make slow answers for timeouts. The JSON shapes are httpbin's.
"""

from __future__ import annotations

import json
import time
from urllib.parse import parse_qsl

if __package__:
    from . import _serving
else:  # started by path without site-packages (how the node starts it): this folder is on sys.path
    import _serving

MAX_DELAY = 10
JSON = [("Content-Type", "application/json"), ("Access-Control-Allow-Origin", "*"),
        ("Access-Control-Allow-Credentials", "true")]


def _headers(request: _serving.Request) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name, value in request.headers:
        key = "-".join(part.capitalize() for part in name.split("-"))
        merged[key] = f"{merged[key]},{value}" if key in merged else value
    return merged


def _args(request: _serving.Request) -> dict[str, str | list[str]]:
    args: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(request.query, keep_blank_values=True):
        if key in args:
            previous = args[key]
            args[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            args[key] = value
    return args


def _origin(request: _serving.Request) -> str:
    forwarded = request.header("X-Forwarded-For")
    return f"{forwarded}, {request.peer}" if forwarded else request.peer


def _url(request: _serving.Request) -> str:
    host = request.header("Host") or f"{request.local[0]}:{request.local[1]}"
    scheme = request.header("X-Forwarded-Proto", "http")
    return f"{scheme}://{host}{request.target}"


def _json(payload: object, status: int = 200) -> _serving.Response:
    return status, JSON, (json.dumps(payload, indent=2) + "\n").encode()


def _anything(request: _serving.Request) -> dict[str, object]:
    text = request.body.decode("utf-8", "replace")
    form: dict[str, str] = {}
    parsed_json = None
    content_type = request.header("Content-Type")
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(text, keep_blank_values=True))
        text = ""
    elif content_type.startswith("application/json"):
        try:
            parsed_json = json.loads(text)
        except ValueError:
            parsed_json = None
    return {"args": _args(request), "data": text, "files": {}, "form": form, "headers": _headers(request),
            "json": parsed_json, "method": request.method, "origin": _origin(request), "url": _url(request)}


def handle(request: _serving.Request) -> _serving.Response:
    path = request.path.rstrip("/") or "/"
    parts = path.split("/")
    if path == "/get":
        return _json({"args": _args(request), "headers": _headers(request), "origin": _origin(request),
                      "url": _url(request)})
    if path == "/headers":
        return _json({"headers": _headers(request)})
    if path == "/ip":
        return _json({"origin": _origin(request)})
    if path == "/user-agent":
        return _json({"user-agent": request.header("User-Agent") or None})
    if path == "/anything" or path.startswith("/anything/") or path in {"/post", "/put", "/patch", "/delete"}:
        return _json(_anything(request))
    if len(parts) == 3 and parts[1] == "status":
        try:
            code = int(parts[2].split(",")[0])
        except ValueError:
            return 400, [("Content-Type", "text/plain")], b"Invalid status code\n"
        return code, [("Content-Type", "text/html; charset=utf-8")], b""
    if len(parts) == 3 and parts[1] == "delay":
        try:
            seconds = min(float(parts[2]), MAX_DELAY)
        except ValueError:
            return 400, [("Content-Type", "text/plain")], b"Invalid delay\n"
        time.sleep(max(seconds, 0))
        return _json({"args": _args(request), "data": request.body.decode("utf-8", "replace"), "files": {},
                      "form": {}, "headers": _headers(request), "origin": _origin(request), "url": _url(request)})
    if path == "/":
        return 200, [("Content-Type", "text/html; charset=utf-8")], b"<!DOCTYPE html><title>httpbin.org</title>\n"
    return 404, [("Content-Type", "text/html")], (
        b"<!DOCTYPE HTML PUBLIC \"-//W3C//DTD HTML 3.2 Final//EN\">\n<title>404 Not Found</title>\n"
        b"<h1>Not Found</h1>\n<p>The requested URL was not found on the server.</p>\n")


def main() -> None:
    _serving.run(handle, default_port=80, server="gunicorn/19.9.0")


if __name__ == "__main__":
    main()
