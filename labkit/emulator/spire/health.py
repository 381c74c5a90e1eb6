"""SPIRE's ``health_checks`` listener: ``/live`` and ``/ready`` for the kubelet's httpGet probes.

SPIRE's Kubernetes manifests probe the server and the agent this way (port 8080 in the quickstart), so a pod is
Ready only when the program behind it is: the server once its APIs listen, the agent once it has attested.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from labkit.emulator.spire.config import HealthChecks, bind_host


async def serve(checks: HealthChecks, ready: Callable[[], bool]) -> web.AppRunner:
    """Start the listener; the caller cleans the returned runner up.

    Args:
        checks: the ``health_checks`` block.
        ready: whether the program is ready now.
    """
    async def live(request: web.Request) -> web.Response:
        return web.json_response({"logger": {}, "message": "live"})

    async def readiness(request: web.Request) -> web.Response:
        if ready():
            return web.json_response({"message": "ready"})
        return web.json_response({"message": "not ready"}, status=500)

    app = web.Application()
    app.router.add_get(checks.live_path, live)
    app.router.add_get(checks.ready_path, readiness)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, bind_host(checks.bind_address), checks.bind_port).start()
    return runner
