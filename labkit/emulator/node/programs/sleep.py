"""The idle program: what ``sleep infinity`` does in the curl/sleep samples' client pods.

It keeps the pod running so ``kubectl exec`` has somewhere to run; SIGTERM ends it at once with
status 0 (a real ``sleep`` as PID 1 would ignore SIGTERM and wait for the grace period to run out,
which only slows every lab down).
"""

from __future__ import annotations

import signal
import sys


def _exit(signum: int, frame: object) -> None:
    sys.exit(0)


def main() -> None:
    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGINT, _exit)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
