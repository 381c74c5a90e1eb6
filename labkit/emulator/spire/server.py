"""``spire-server``: the program behind SPIRE's server image, and the CLI of the same binary.

Usage (the image's entrypoint is ``spire-server run``; a container's args are its flags)::

    python -m labkit.emulator.spire.server [run] -config /run/spire/config/server.conf
    python -m labkit.emulator.spire.server entry show|create …, bundle show|set|list …, healthcheck

The server (:mod:`.serving`) and the CLI (:mod:`.cli`) are imported only when asked for: ``kubectl exec … --
spire-server entry show`` should answer as fast as the real binary, without loading the server's web stack.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from labkit.errors import SpireError


def main(argv: list[str] | None = None) -> int:
    """Run the server (``run`` or flags only) or one CLI command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        args = args[1:]
    if not args or args[0].startswith("-"):
        from labkit.emulator.spire import serving  # noqa: PLC0415 - the CLI needs none of it

        logging.basicConfig(level=logging.INFO, format="time=%(asctime)s level=%(levelname)s msg=%(message)s "
                            "subsystem_name=%(name)s", stream=sys.stderr)
        config = "/run/spire/config/server.conf"
        if "-config" in args and args.index("-config") + 1 < len(args):
            config = args[args.index("-config") + 1]
        try:
            asyncio.run(serving.run(config))
        except SpireError as exc:
            print(f"Error: {exc}", file=sys.stderr)
            return 1
        return 0
    from labkit.emulator.spire import cli  # noqa: PLC0415 - the server needs none of it

    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
