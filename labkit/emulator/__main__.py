"""``python -m labkit.emulator``: the emulator process (see :mod:`labkit.emulator.process`)."""

from labkit.emulator.process import main

raise SystemExit(main())
