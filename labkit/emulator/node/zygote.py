"""The zygote's entry point: ``python -s -m labkit.emulator.node.zygote <socket fd> <module>…`` (see :mod:`.forking`).

A module of its own because :mod:`.forking` is already imported (by the node package) when ``-m`` runs this one.
"""

from __future__ import annotations

from labkit.emulator.node.forking import main

if __name__ == "__main__":
    main()
