"""A lab's notebook as its tests run it: in a fresh kernel, from ``notebooks/``, twice, or with a step left out.

Test modules import this by name (the folder's conftest puts it on ``sys.path``) and get an instance from the
``lab_notebook`` fixture.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from labkit.emulator import launching

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
LABKIT = str(Path(sys.executable).with_name("labkit"))


@dataclass(frozen=True)
class LabNotebook:
    """One lab's notebook, run in a fresh kernel with the current directory at ``notebooks/``.

    Args:
        path: the notebook file.
        lab: the lab's name (its folder under ``$LABKIT_HOME/labs``).
        home: the private LABKIT_HOME.
    """

    path: Path
    lab: str
    home: Path

    def read(self, *, without_tag: str = "") -> nbformat.NotebookNode:
        """The notebook; with ``without_tag``, minus the cells tagged so (a step a learner skipped)."""
        notebook = nbformat.read(self.path, as_version=4)
        if without_tag:
            notebook.cells = [c for c in notebook.cells if without_tag not in c.metadata.get("tags", [])]
        return notebook

    def client(self, notebook: nbformat.NotebookNode) -> NotebookClient:
        """A client that runs ``notebook`` as JupyterLab would, from the notebooks' folder."""
        return NotebookClient(notebook, kernel_name="python3", timeout=600,
                              resources={"metadata": {"path": str(self.path.parent)}})

    def run_twice(self) -> str:
        """Run every cell but the last (the cleanup), twice in one kernel, then the cleanup; what the cells printed."""
        notebook = self._ending_in_cleanup()
        client = self.client(notebook)
        with client.setup_kernel():
            for _ in range(2):
                for index, cell in enumerate(notebook.cells[:-1]):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, index)
            client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
        return "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))

    def labkit_run_twice(self, folder: Path) -> tuple[str, Path]:
        """Run, with the trainer's ``labkit run``, a copy whose cells but the cleanup come twice in a row (one
        kernel) before the cleanup cell; what the cells printed, and the folder the charts were written to.

        Args:
            folder: an empty folder for the copy and its output.
        """
        notebook = self._ending_in_cleanup()
        steps = notebook.cells[:-1]
        notebook.cells = [*steps, *(_copy(c) for c in steps), notebook.cells[-1]]
        twice = folder / self.path.name
        nbformat.write(notebook, twice)
        out = folder / "out"
        done = subprocess.run([LABKIT, "run", str(twice), "--out", str(out)], capture_output=True, text=True,
                              timeout=1200, cwd=self.path.parent, env=dict(os.environ, MPLBACKEND="Agg"),
                              check=False)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        executed = nbformat.read(out / self.path.name, as_version=4)
        return "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", [])), out

    def _ending_in_cleanup(self) -> nbformat.NotebookNode:
        notebook = self.read()
        cleanup = [i for i, c in enumerate(notebook.cells) if "lab.cleanup()" in c.source]
        assert cleanup == [len(notebook.cells) - 1], "the lab must end with its cleanup cell"
        return notebook

    @property
    def stopped(self) -> bool:
        """Whether the lab's embedded clusters are down."""
        return launching.status(self.home / "labs" / self.lab) is None


def _copy(cell: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The same cell once more, under an id of its own (nbformat refuses duplicate ids)."""
    again = copy.deepcopy(cell)
    again["id"] = uuid.uuid4().hex[:8]
    return again
