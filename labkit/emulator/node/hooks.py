"""Container lifecycle hooks: ``preStop`` before a terminating container gets its SIGTERM.

As the kubelet does, a container being stopped first runs its ``lifecycle.preStop`` handler (``exec`` as the pod,
``httpGet``/``tcpSocket`` to the app's address, or ``sleep``), within the deletion's grace period; SIGTERM follows,
and SIGKILL when what is left of the period has passed. A handler that fails or overruns does not hold the
deletion up, as on a real node (there it only earns a ``FailedPreStopHook`` Event).
"""

from __future__ import annotations

import asyncio
import contextlib

from labkit.emulator.node import probing
from labkit.emulator.node.pods import ContainerRecord, PodRecord


async def pre_stop(pod: PodRecord, container: ContainerRecord, host: str, grace: float) -> bool:
    """Run the container's ``preStop`` handler, if it has one and runs; whether it succeeded in time.

    Args:
        pod: the pod's record.
        container: the container being stopped.
        host: where the pod's apps listen (``httpGet`` without a ``host`` goes there).
        grace: the seconds the handler may take at most.
    """
    handler = (container.spec.get("lifecycle") or {}).get("preStop")
    process = container.process
    if not handler or process is None or process.returncode is not None or grace <= 0:
        return True
    if "sleep" in handler:
        await asyncio.sleep(min(float((handler["sleep"] or {}).get("seconds") or 0), grace))
        return True
    action = {**handler, "timeoutSeconds": grace}
    ok = False
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(grace):
            ok = await probing.check(action, container.spec, host,
                                     lambda argv, timeout: probing.run_exec(pod, container, argv, timeout))
    return ok
