"""Run a lab notebook headless, as ``labkit run 01-multi-primary`` does, and keep what it produced.

A trainer checks a lab before a workshop, and CI keeps its evidence, without opening JupyterLab: the
executed notebook (outputs, timings) and every figure as a PNG file beside it, so a chart that changed
shows in a diff or a review without a notebook viewer. Progress is one line per code cell, because a lab
spends its time in a few cells (install, wait, loops) and the reader wants to know which one it is in.

Kernels: ``python3`` means this environment's Python (what nbval's ``--nbval-current-env`` does), not
whatever kernelspec of that name a user directory holds, so ``labkit run`` tests the labkit that runs it.
Any other name is looked up among the installed kernelspecs. The notebook runs in its own folder, as
JupyterLab runs it, so its relative paths (``../manifests/…``) resolve the same.

A failing cell stops the run (later cells build on it) and the notebook is still written, with the
error in that cell's output: it is the first thing to open.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipykernel.kernelspec
import nbformat
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager, NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
from traitlets import default

from labkit.errors import NotebookRunError

CURRENT_ENV_KERNEL = "python3"
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SOURCE_HEAD = 8
_TRACEBACK_TAIL = 15


@dataclass(frozen=True)
class CellRun:
    """How one code cell went.

    Args:
        number: its position in the notebook, from 1 (markdown cells count too, as in the PNG names).
        seconds: how long it ran.
        ok: whether it finished without an error.
        images: the PNG files written from its outputs.
    """

    number: int
    seconds: float
    ok: bool
    images: tuple[Path, ...] = ()


@dataclass(frozen=True)
class NotebookRun:
    """What :func:`run_notebook` did.

    Args:
        source: the notebook that was run.
        notebook: the executed notebook written to the output folder (partial when a cell failed).
        cells: the code cells that ran, in order; the last one failed when ``error`` is set.
        error: the failure as a reader needs it (cell, source head, traceback tail); empty on success.
        images: every PNG written, in cell order.
    """

    source: Path
    notebook: Path
    cells: tuple[CellRun, ...] = ()
    error: str = ""
    images: tuple[Path, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether every cell ran without an error."""
        return not self.error


def find_notebook(name: str | Path, *, cwd: Path | None = None, notebooks_dir: Path = NOTEBOOKS_DIR) -> Path:
    """The notebook ``name`` means: a path, or a stem looked up in the current folder and ``notebooks/``.

    ``01-multi-primary``, ``01-multi-primary.ipynb`` and ``notebooks/01-multi-primary.ipynb`` all work, from
    the repository or anywhere else; so does a unique prefix such as ``01``.

    Args:
        name: a path or a stem.
        cwd: the folder relative names start from; the current directory by default.
        notebooks_dir: the repository's notebooks folder.

    Raises:
        NotebookRunError: nothing or several notebooks match (the message lists where it looked or what matched).
    """
    base = cwd or Path.cwd()
    given = Path(name)
    filename = given if given.suffix == ".ipynb" else given.with_name(given.name + ".ipynb")
    folders = list(dict.fromkeys([base, base / "notebooks", notebooks_dir]))
    candidates = [filename if filename.is_absolute() else folder / filename for folder in folders]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    if given.suffix != ".ipynb" and len(given.parts) == 1:
        matches = sorted({match.resolve() for folder in folders if folder.is_dir()
                          for match in folder.glob(f"{given.name}*.ipynb")})
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise NotebookRunError(f"{str(name)!r} matches {len(matches)} notebooks: "
                                   f"{', '.join(sorted(m.name for m in matches))}; give more of the name")
    looked = ", ".join(str(c) for c in candidates)
    raise NotebookRunError(f"no notebook {str(name)!r}: looked for {looked}")


def run_notebook(
    notebook: str | Path,
    *,
    out_dir: str | Path | None = None,
    kernel: str = CURRENT_ENV_KERNEL,
    cell_timeout: float | None = 600,
    progress: Callable[[str], None] | None = None,
) -> NotebookRun:
    """Execute every cell of a notebook in a fresh kernel; write the executed notebook and its PNGs.

    Args:
        notebook: a path or a stem (see :func:`find_notebook`).
        out_dir: where to write ``<stem>.ipynb`` and ``<stem>-cellNN-K.png``; ``out/<stem>/`` by default.
        kernel: ``python3`` for this environment's Python, or the name of an installed kernelspec.
        cell_timeout: seconds a cell may run before it counts as failed; None for no limit.
        progress: called with one line per code cell (``[12/40] ✓ 0.8 s  lab.call(…)``); silent when None.

    Returns:
        What ran; ``error`` says which cell failed and why when ``ok`` is False.

    Raises:
        NotebookRunError: the notebook cannot be found or read, or the kernel does not exist.
    """
    source = find_notebook(notebook)
    out = Path(out_dir) if out_dir is not None else Path("out") / source.stem
    try:
        nb = nbformat.read(source, as_version=4)
    except (OSError, ValueError) as exc:
        raise NotebookRunError(f"cannot read {source}: {exc}") from exc
    try:
        _CurrentEnvSpecs().get_kernel_spec(kernel)  # before anything is written
    except NoSuchKernel as exc:
        raise NotebookRunError(f"no kernel {kernel!r}: use python3 (this environment) or one of "
                               f"{', '.join(sorted(KernelSpecManager().find_kernel_specs())) or 'none'}") from exc
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(f"{source.stem}-cell*.png"):
        stale.unlink()  # figures of an earlier run would pass for this one's
    say = progress or (lambda _line: None)
    total = len(nb.cells)
    started: dict[int, float] = {}
    runs: list[CellRun] = []

    def on_start(cell: Any, cell_index: int, **_: Any) -> None:
        started[cell_index] = time.monotonic()

    def on_executed(cell: Any, cell_index: int, execute_reply: Any, **_: Any) -> None:
        seconds = time.monotonic() - started.get(cell_index, time.monotonic())
        ok = (execute_reply or {}).get("content", {}).get("status") == "ok"
        images = _write_images(cell, cell_index + 1, source.stem, out)
        runs.append(CellRun(cell_index + 1, seconds, ok, images))
        say(f"[{cell_index + 1:>{len(str(total))}}/{total}] {'✓' if ok else '✗'} {seconds:.1f} s  {_first_line(cell)}")

    client = NotebookClient(nb, timeout=None if cell_timeout is None else int(max(cell_timeout, 1)),
                            kernel_name=kernel, kernel_manager_class=_KernelManager,
                            resources={"metadata": {"path": str(source.parent)}},
                            on_cell_start=on_start, on_cell_executed=on_executed)
    error = ""
    try:
        client.execute(env=_kernel_env())
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        index = _failed_index(nb, runs, started)
        error = _describe_failure(nb, index, exc, cell_timeout)
        if isinstance(exc, CellTimeoutError | DeadKernelError) and (not runs or runs[-1].number != index + 1):
            runs.append(CellRun(index + 1, time.monotonic() - started.get(index, time.monotonic()), False))
            say(f"[{index + 1:>{len(str(total))}}/{total}] ✗ {runs[-1].seconds:.1f} s  {_first_line(nb.cells[index])}")
    written = out / f"{source.stem}.ipynb"
    nbformat.write(nb, written)
    images = tuple(image for run in runs for image in run.images)
    return NotebookRun(source, written, tuple(runs), error, images)


class _CurrentEnvSpecs(KernelSpecManager):
    """Kernelspecs, with ``python3`` pinned to the interpreter running labkit (as nbval's current-env kernel)."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == CURRENT_ENV_KERNEL:
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())
        return super().get_kernel_spec(kernel_name)


class _KernelManager(AsyncKernelManager):
    # TCP on loopback, as JupyterLab itself uses: the IPC transport failed to start kernels in some working
    # directories. (ipykernel notes on stderr that loopback TCP is unencrypted.)
    @default("kernel_spec_manager")
    def _default_kernel_spec_manager(self) -> KernelSpecManager:
        return _CurrentEnvSpecs(data_dir=self.data_dir)


def _kernel_env() -> dict[str, str]:
    # CI often exports MPLBACKEND=Agg for headless plotting; in a kernel that would leave figures with no
    # PNG output at all. The inline backend draws with Agg too, and gives each figure its image/png output.
    env = dict(os.environ)
    if env.get("MPLBACKEND", "").lower() in ("", "agg"):
        env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def _write_images(cell: Any, number: int, stem: str, out: Path) -> tuple[Path, ...]:
    written = []
    for output in cell.get("outputs", []):
        png = (output.get("data") or {}).get("image/png")
        if png:
            path = out / f"{stem}-cell{number:02d}-{len(written) + 1}.png"
            path.write_bytes(base64.b64decode(png if isinstance(png, str) else "".join(png)))
            written.append(path)
    return tuple(written)


def _first_line(cell: Any) -> str:
    line = next((text.strip() for text in str(cell.get("source", "")).splitlines() if text.strip()), "")
    return line if len(line) <= 60 else line[:59] + "…"


def _failed_index(nb: Any, runs: list[CellRun], started: dict[int, float]) -> int:
    # The failed cell is the last one started: after an error nbclient starts no other.
    if started:
        return max(started)
    return runs[-1].number - 1 if runs else 0


def _describe_failure(nb: Any, index: int, exc: Exception, cell_timeout: float | None) -> str:
    cell = nb.cells[index]
    lines = str(cell.get("source", "")).splitlines()
    head = [f"    | {line}" for line in lines[:_SOURCE_HEAD]]
    if len(lines) > _SOURCE_HEAD:
        head.append(f"    | … ({len(lines) - _SOURCE_HEAD} more lines)")
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    detail: list[str] = []
    if isinstance(exc, CellTimeoutError):
        # nbclient interrupts the kernel, so the cell's own error is a KeyboardInterrupt: say why first.
        detail.append(f"timed out: the cell did not finish within {cell_timeout:g} s (raise it with --timeout); "
                      f"it was interrupted here:")
    if errors:
        traceback = _ANSI.sub("", "\n".join(errors[-1].get("traceback") or [])).splitlines()
        detail += [line for line in traceback if line.strip()][-_TRACEBACK_TAIL:] or [
            f"{errors[-1].get('ename')}: {errors[-1].get('evalue')}"]
    elif not detail:
        detail = [line for line in _ANSI.sub("", str(exc)).splitlines() if line.strip()][-_TRACEBACK_TAIL:]
    return "\n".join([f"cell {index + 1} failed:", *head, "  error:", *(f"    {line}" for line in detail)])
