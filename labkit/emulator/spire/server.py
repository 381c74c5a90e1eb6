"""``spire-server``: the program behind SPIRE's server image, and the CLI of the same binary.

Usage (the image's entrypoint is ``spire-server run``; a container's args are its flags)::

    python -m labkit.emulator.spire.server [run] -config /run/spire/config/server.conf
    python -m labkit.emulator.spire.server entry show|create …, bundle show|set|list …, healthcheck

The server (:mod:`.serving`) and the CLI (:mod:`.cli`) are imported only when asked for: ``kubectl exec … --
spire-server entry show`` should answer as fast as the real binary, without loading the server's web stack.
"""

from __future__ import annotations

import sys

from labkit.emulator.spire.programs import LOG_FORMAT, run_program


def main(argv: list[str] | None = None) -> int:
    """Run the server (``run`` or flags only) or one CLI command."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "run":
        args = args[1:]
    if not args or args[0].startswith("-"):
        from labkit.emulator.spire import serving  # noqa: PLC0415 - the CLI needs none of it

        return run_program(args, "/run/spire/config/server.conf", serving.run,
                           log_format=f"{LOG_FORMAT} subsystem_name=%(name)s")
    from labkit.emulator.spire import cli  # noqa: PLC0415 - the server needs none of it

    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
