"""Istio's helloworld sample (``examples-helloworld-v1``/``-v2``): which version and which pod answered.

The real image is a Flask app under gunicorn; the labs only read its two answers, so this serves those
exactly: ``GET /hello`` → ``Hello version: v1, instance: <pod name>\\n`` (``SERVICE_VERSION`` comes from
the image, ``HOSTNAME`` is the pod name as a container runtime sets it) and ``GET /health``.
"""

from __future__ import annotations

import os

if __package__:
    from . import _serving
else:  # started by path without site-packages (how the node starts it): this folder is on sys.path
    import _serving

TEXT = [("Content-Type", "text/html; charset=utf-8")]


def handle(request: _serving.Request) -> _serving.Response:
    if request.method not in {"GET", "HEAD"}:
        return 405, TEXT, b"<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n"
    if request.path == "/hello":
        version = os.environ.get("SERVICE_VERSION", "v1")
        instance = os.environ.get("HOSTNAME", "")
        return 200, TEXT, f"Hello version: {version}, instance: {instance}\n".encode()
    if request.path == "/health":
        return 200, TEXT, b"Helloworld is healthy"
    return 404, TEXT, (b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
                       b"<p>The requested URL was not found on the server. If you entered the URL manually please "
                       b"check your spelling and try again.</p>\n")


def main() -> None:
    port = int(os.environ.get("SERVICE_PORT") or 5000)
    _serving.run(handle, default_port=port, server="gunicorn")


if __name__ == "__main__":
    main()
