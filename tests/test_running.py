"""``labkit run``: a notebook executed headless, the executed copy and its figures written, failures shown.

Run through the installed console script, as a trainer types it, on tiny notebooks made here (the
labs' notebooks are written elsewhere and are exercised by nbval).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from labkit.errors import LabkitError
from labkit.running import NOTEBOOKS_DIR, find_notebook

LABKIT = str(Path(sys.executable).with_name("labkit"))
PLOT = "import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\nax.plot([1, 3, 2])\nplt.show()"


def labkit(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    # MPLBACKEND=Agg as CI sets it: the figures must still come out as PNGs.
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([LABKIT, *map(str, args)], capture_output=True, text=True, timeout=180, cwd=cwd, env=env,
                          check=False)


def _notebook(path: Path, *cells: str) -> Path:
    nb = new_notebook(cells=[new_markdown_cell("# A tiny lab"), *(new_code_cell(source) for source in cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_run_writes_the_executed_notebook_and_one_png_per_figure(tmp_path: Path) -> None:
    _notebook(tmp_path / "tiny.ipynb", "print('hello from the kernel')", PLOT)
    done = labkit("run", "tiny", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"running {tmp_path / 'tiny.ipynb'} (kernel python3)"
    assert lines[1].startswith("[2/3] ✓ ") and lines[1].endswith(" s  print('hello from the kernel')")
    assert lines[2].startswith("[3/3] ✓ ")
    out = tmp_path / "out" / "tiny"
    assert sorted(p.name for p in out.iterdir()) == ["tiny-cell03-1.png", "tiny.ipynb"]
    assert (out / "tiny-cell03-1.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    executed = nbformat.read(out / "tiny.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "hello from the kernel\n"
    assert executed.cells[2].execution_count == 2 and executed.metadata["language_info"]["name"] == "python"


@pytest.mark.slow
def test_a_failing_cell_stops_the_run_shows_the_error_and_keeps_the_partial_notebook(tmp_path: Path) -> None:
    _notebook(tmp_path / "broken.ipynb", "print('before')", "ratio = 1\nratio / 0", "print('never')")
    done = labkit("run", tmp_path / "broken.ipynb", "--out", tmp_path / "evidence", cwd=tmp_path)
    assert done.returncode == 1
    assert "[3/4] ✗ " in done.stdout and "[4/4]" not in done.stdout
    assert "cell 3 failed:\n    | ratio = 1\n    | ratio / 0\n  error:" in done.stderr
    assert "ZeroDivisionError: division by zero" in done.stderr
    assert f"wrote the partial notebook {tmp_path / 'evidence' / 'broken.ipynb'}" in done.stdout
    partial = nbformat.read(tmp_path / "evidence" / "broken.ipynb", as_version=4)
    assert partial.cells[2].outputs[-1]["ename"] == "ZeroDivisionError"
    assert partial.cells[3].get("outputs") == [] and partial.cells[3].execution_count is None


def test_an_unknown_notebook_or_kernel_is_one_error_line(tmp_path: Path) -> None:
    missing = labkit("run", "no-such-lab", cwd=tmp_path)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no notebook 'no-such-lab': looked for ")
    _notebook(tmp_path / "tiny.ipynb", "print(1)")
    kernel = labkit("run", "tiny", "--kernel", "no-such-kernel", cwd=tmp_path)
    assert kernel.returncode == 1 and kernel.stderr.startswith("error: no kernel 'no-such-kernel': use python3")
    assert not (tmp_path / "out").exists()


def test_find_notebook_resolves_stems_against_cwd_and_notebooks(tmp_path: Path) -> None:
    repo = tmp_path / "repo" / "notebooks"
    repo.mkdir(parents=True)
    lab = _notebook(repo / "01-multi-primary.ipynb")
    _notebook(repo / "02-primary-remote.ipynb")
    here = tmp_path / "here"
    (here / "notebooks").mkdir(parents=True)
    local = _notebook(here / "scratch.ipynb")
    nested = _notebook(here / "notebooks" / "03-nlb-headless.ipynb")
    for name in ("01-multi-primary", "01-multi-primary.ipynb", "01", lab):
        assert find_notebook(name, cwd=here, notebooks_dir=repo) == lab
    assert find_notebook("scratch", cwd=here, notebooks_dir=repo) == local
    assert find_notebook("03-nlb-headless", cwd=here, notebooks_dir=repo) == nested
    assert find_notebook("notebooks/03-nlb-headless", cwd=here, notebooks_dir=repo) == nested
    with pytest.raises(LabkitError, match=r"'0' matches 3 notebooks: 01-multi-primary.ipynb, "
                                          r"02-primary-remote.ipynb, 03-nlb-headless.ipynb; give more"):
        find_notebook("0", cwd=here, notebooks_dir=repo)
    with pytest.raises(LabkitError, match="no notebook '99-nope': looked for "):
        find_notebook("99-nope", cwd=here, notebooks_dir=repo)


def test_the_repository_notebooks_folder_is_searched() -> None:
    repository = Path(__file__).resolve().parents[1]
    assert repository / "notebooks" == NOTEBOOKS_DIR
