"""One poll-with-deadline behind every wait: pods ready, a capture complete, a proxy that learnt an endpoint.

A lab waits for many things that a watch cannot express in one request (a Deployment rolled out *and* its
pods Ready; an Envoy whose endpoint table changed after a remote secret went away) and that have no event of
their own. A poll answers all of them the same way on real and embedded clusters, and a failed wait can say
what it last saw — ``istiod-… ErrImagePull: …`` is the message a learner needs, not "timed out". So there is
one loop, here, and every wait in labkit (and in its tests, through :mod:`labkit.testing`) is a ``check``
handed to it.

``check`` returns a value: truthy means done (and is returned); falsy means not yet, and the last falsy value
is what the error shows. The interval grows from ``interval`` to ``max_interval`` so a quick condition is seen
quickly and a slow one does not hammer the API server.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from labkit.errors import WaitTimeoutError

T = TypeVar("T")


def poll(
    check: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    max_interval: float = 1.0,
    explain: Callable[[T | None], list[str]] | None = None,
    on_attempt: Callable[[T], None] | None = None,
) -> T:
    """Call ``check`` until it returns a truthy value (returned), or raise once ``timeout`` has passed.

    ``check`` always runs at least once, and once more at the deadline, so a zero timeout still looks.

    Args:
        check: the condition; a truthy return ends the wait, a falsy one is kept for the error.
        timeout: seconds before giving up.
        what: what is awaited, for the error (``deploy/istiod ready in cluster1/istio-system``).
        interval: seconds before the second attempt; doubles up to ``max_interval``.
        max_interval: the longest pause between attempts.
        explain: turns the last value into lines for the error (what is still not ready, and why); by
            default the value's repr.
        on_attempt: called with each value (a progress bar's update).

    Raises:
        WaitTimeoutError: still falsy at the deadline; ``not_ready`` holds ``explain``'s lines.
    """
    deadline = time.monotonic() + timeout
    pause = interval
    last: T | None = None
    while True:
        last = check()
        if on_attempt is not None:
            on_attempt(last)
        if last:
            return last
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            lines = explain(last) if explain is not None else [f"last seen: {last!r}"]
            detail = "".join(f"\n  - {line}" for line in lines)
            raise WaitTimeoutError(f"{what}: not reached within {timeout:g} s{detail}", lines)
        time.sleep(min(pause, remaining))
        pause = min(pause * 2, max_interval)
