"""A lab's notebook as its tests run it: in a fresh kernel, from ``notebooks/``, twice, or with a step left out.

Test modules import this by name (the folder's conftest puts it on ``sys.path``) and get an instance from the
``lab_notebook`` fixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from labkit.emulator import launching

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


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
        notebook = self.read()
        cleanup = [i for i, c in enumerate(notebook.cells) if "lab.cleanup()" in c.source]
        assert cleanup == [len(notebook.cells) - 1], "the lab must end with its cleanup cell"
        client = self.client(notebook)
        with client.setup_kernel():
            for _ in range(2):
                for index, cell in enumerate(notebook.cells[:-1]):
                    if cell.cell_type == "code":
                        client.execute_cell(cell, index)
            client.execute_cell(notebook.cells[-1], len(notebook.cells) - 1)
        return "".join(o.get("text", "") for c in notebook.cells for o in c.get("outputs", []))

    @property
    def stopped(self) -> bool:
        """Whether the lab's embedded clusters are down."""
        return launching.status(self.home / "labs" / self.lab) is None
