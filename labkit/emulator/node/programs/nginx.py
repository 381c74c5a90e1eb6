"""The ``nginx`` image as the labs see it: the default "Welcome to nginx!" page on port 80.

Seed 000 ends its mTLS chain at an nginx pod and reads this page back through two gateways, so the
bytes, the ``Server`` header and the 404 page are nginx's own (1.27 stock configuration).
"""

from __future__ import annotations

if __package__:
    from . import _serving
else:  # started by path without site-packages (how the node starts it): this folder is on sys.path
    import _serving

VERSION = "nginx/1.27.5"

WELCOME = b"""<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
<style>
html { color-scheme: light dark; }
body { width: 35em; margin: 0 auto;
font-family: Tahoma, Verdana, Arial, sans-serif; }
</style>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working. Further configuration is required.</p>

<p>For online documentation and support please refer to
<a href="http://nginx.org/">nginx.org</a>.<br/>
Commercial support is available at
<a href="http://nginx.com/">nginx.com</a>.</p>

<p><em>Thank you for using nginx.</em></p>
</body>
</html>
"""

# The page's file time in the image; nginx derives Last-Modified and ETag from it.
_MTIME = 1744128000.0


def _error_page(status: int) -> bytes:
    title = f"{status} {_serving.reason(status)}"
    return (f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
            f"<hr><center>{VERSION}</center>\r\n</body>\r\n</html>\r\n").encode()


def handle(request: _serving.Request) -> _serving.Response:
    if request.method not in {"GET", "HEAD"}:
        return 405, [("Content-Type", "text/html")], _error_page(405)
    if request.path in {"/", "/index.html"}:
        etag = f'"{int(_MTIME):x}-{len(WELCOME):x}"'
        return 200, [
            ("Content-Type", "text/html"),
            ("Last-Modified", _serving.http_date(_MTIME)),
            ("ETag", etag),
            ("Accept-Ranges", "bytes"),
        ], WELCOME
    return 404, [("Content-Type", "text/html")], _error_page(404)


def main() -> None:
    _serving.run(handle, default_port=80, server=VERSION)


if __name__ == "__main__":
    main()
