"""A lab's notebook again and again: how often it passes, and how long each run takes, alone or under load.

Run: .venv/bin/python bench/notebook_repeat.py NOTEBOOK [RUNS] [--load "PYTEST ARGS"]

e.g. ``.venv/bin/python bench/notebook_repeat.py notebooks/04-replicated-control-planes.ipynb 7 --load tests/mesh``

Each run executes every cell but the cleanup in a fresh kernel, from ``notebooks/`` and in a LABKIT_HOME of its
own, as nbval does, then stops the lab. With ``--load``, a pytest of those arguments runs alongside, again and
again, so the notebook meets the contention a full ``make test`` gives it (timing races show there first). Prints
one line per run and the pass rate; the first failure stops the loop, prints the failing cell's end, and leaves
its lab running for inspection (the line says where, and how to stop it).
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from labkit.emulator import launching

ROOT = Path(__file__).resolve().parents[1]


def run_once(notebook: Path, home: Path) -> tuple[bool, float, str]:
    """(passed, seconds, the failure's end) of one run of ``notebook`` without its cleanup cell, in ``home``."""
    cells = nbformat.read(notebook, as_version=4)
    if cells.cells and "lab.cleanup()" in cells.cells[-1].source:
        cells.cells.pop()
    os.environ["LABKIT_HOME"] = str(home)
    client = NotebookClient(cells, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(notebook.parent)}})
    start = time.monotonic()
    try:
        client.execute()
    except CellExecutionError as exc:
        return False, time.monotonic() - start, str(exc)[-1500:]
    return True, time.monotonic() - start, ""


class Load:
    """A pytest of ``arguments``, started again each time it ends, until :meth:`stop`."""

    def __init__(self, arguments: list[str]):
        self.arguments = arguments
        self.stopping = threading.Event()
        self.current: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            self.current = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                             *self.arguments], cwd=ROOT, stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL)
            self.current.wait()

    def stop(self) -> None:
        """Interrupt the running pytest as Ctrl-C does: it runs its teardowns, which stop every lab it started."""
        self.stopping.set()
        if self.current is not None:
            self.current.send_signal(signal.SIGINT)
        self.thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("runs", type=int, nargs="?", default=5)
    parser.add_argument("--load", default="", help="pytest arguments to run alongside, e.g. tests/mesh")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("RUNS must be 1 or more")
    notebook = args.notebook.resolve()
    load = Load(shlex.split(args.load)) if args.load else None
    passed = 0
    try:
        for index in range(1, args.runs + 1):
            home = Path(tempfile.mkdtemp(prefix="labkit-repeat-"))
            ok, seconds, failure = run_once(notebook, home)
            print(f"run {index}: {'passed' if ok else 'FAILED'} in {seconds:.1f} s", flush=True)
            if not ok:
                print(failure)
                print(f"the lab is still running: LABKIT_HOME={home}; stop it with "
                      f"python -c \"from labkit.emulator import launching; from pathlib import Path; "
                      f"[launching.down(p) for p in Path('{home}/labs').glob('*')]\"")
                break
            passed += 1
            for state in (home / "labs").glob("*"):
                launching.down(state)
            shutil.rmtree(home, ignore_errors=True)
    finally:
        if load is not None:
            load.stop()
    print(f"{passed} of {index} runs passed{' under load: ' + args.load if args.load else ''}")


if __name__ == "__main__":
    main()
