"""What an attendee sees: JupyterLab started by ``make lab``, in a real browser, notebooks run with Run All.

Executing notebooks headless (nbval) proves the labs' claims, but not what the page shows: a widget whose
model is missing, a chart shrunk to unreadable, an error scrolled out of sight. Here Chromium (the
distribution's, driven by Playwright; never a browser download) opens the workshop at 1440×1000 as an
attendee would, runs Lab 3 with Run All, checks that no cell shows an error or "Error displaying widget",
presses the live view's Stop (in a small notebook of its own: Lab 1 is too long to run here), saves, reopens
and finds the pictures again. Screenshots of every chart go to ``out/screenshots/`` for a person to look at.

Needs ``/usr/bin/chromium`` (Debian/Ubuntu: ``apt-get install chromium``; ``.ci/run`` installs it when it runs
as root) or a Chromium named by ``LABKIT_CHROMIUM``; otherwise the test skips and says so.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from labkit.emulator import launching
from labkit.testing import eventually

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "out" / "screenshots"
LIVE_NOTEBOOK = Path(__file__).with_name("live-view.ipynb")
CHROMIUM = Path(os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1440, "height": 1000}
# The flags a closed network needs (no background fetches, no first-run pages), and a sandbox-free start as root.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
ERRORS = ("Error displaying widget", "Traceback (most recent call last)", "CheckpointFailed")

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore::ResourceWarning")]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def browser_kit() -> object:
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install the distribution's (`apt-get install chromium`) or set "
                    "LABKIT_CHROMIUM to a Chromium binary to run the browser test")
    return pytest.importorskip("playwright.sync_api", reason="pip install -e '.[test]' brings Playwright")


@pytest.fixture(scope="module")
def workshop(tmp_path_factory: pytest.TempPathFactory, browser_kit: object) -> Iterator[tuple[str, Path]]:
    """``make lab`` on a free port, with a working folder, Jupyter config and LABKIT_HOME of its own."""
    home = tmp_path_factory.mktemp("browser")
    folder = home / "workshop"
    folder.mkdir()
    shutil.copy(LIVE_NOTEBOOK, folder / LIVE_NOTEBOOK.name)
    port = _free_port()
    env = dict(os.environ, WORKSHOP=str(folder), LABKIT_HOME=str(home / "labkit"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTERLAB_SETTINGS_DIR=str(home / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"))
    # JupyterLab 4 renders only the cells on screen (windowing); the checks below read the whole notebook.
    tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text('{"windowingMode": "none"}')
    log = home / "make-lab.log"
    with log.open("w") as out:
        process = subprocess.Popen(["make", "-s", "lab", f"JUPYTER_ARGS=--no-browser --port={port}"], cwd=ROOT,
                                   env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        pattern = re.compile(rf"http://127\.0\.0\.1:{port}/lab\?token=[0-9a-f]+")

        def printed() -> re.Match[str] | None:
            assert process.poll() is None, log.read_text()
            return pattern.search(log.read_text())

        url = eventually(printed, 120, "JupyterLab's URL in the output of make lab").group(0)
        yield url, folder
    finally:
        _stop(process)
        for lab in (home / "labkit" / "labs").glob("*"):
            launching.down(lab)


@pytest.fixture(scope="module")
def page(browser_kit, workshop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    profile = tmp_path_factory.mktemp("chromium-profile")
    with browser_kit.sync_playwright() as playwright:
        # A fresh profile (--user-data-dir, as Playwright passes it for a persistent context).
        browser = playwright.chromium.launch_persistent_context(str(profile), executable_path=str(CHROMIUM),
                                                                args=CHROMIUM_ARGS, viewport=VIEWPORT)
        try:
            page = browser.new_page()
            url, _ = workshop
            page.goto(url)  # logs in with the token; the notebooks open by path below
            page.wait_for_selector(".jp-DirListing-content", timeout=60_000)
            yield page
        finally:
            browser.close()


def open_notebook(page, workshop, name: str) -> None:
    url, _ = workshop
    page.goto(url.split("/lab?")[0] + f"/lab/tree/{name}?reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # The kernel is connected when the status bar says so; a Run All before that may run nothing.
    page.wait_for_function("() => document.querySelector('.jp-StatusBar-Widget') && "
                           "document.body.innerText.includes('(ipykernel) | Idle')", timeout=120_000)
    accept_dialogs(page)


def accept_dialogs(page) -> list[str]:
    """Accept whatever dialog JupyterLab put up (a kernel choice on a slow start); what they said."""
    said = []
    while page.locator(".jp-Dialog").count():
        said.append(page.locator(".jp-Dialog").first.inner_text())
        page.locator(".jp-Dialog .jp-mod-accept").first.click()
    return said


def run_all(page) -> None:
    dialogs = accept_dialogs(page)
    assert not any("Error" in text for text in dialogs), dialogs
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def prompts(page) -> list[str]:
    return page.locator(".jp-CodeCell .jp-InputArea-prompt").all_inner_texts()


def finished(page) -> bool:
    """Every code cell has run (a number in its prompt), or the run stopped at an error."""
    shown = prompts(page)
    if any(marker in page.locator(".jp-Notebook").inner_text() for marker in ERRORS[1:]):
        return True
    return bool(shown) and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in shown)


def started(page) -> bool:
    return any(re.fullmatch(r"\[(\*|\d+)\]:", p.strip()) for p in prompts(page))


def run_until_finished(page, name: str, timeout: float) -> None:
    """Run All and wait for the last cell; on a timeout, a screenshot of the page says where it stopped."""
    try:
        for _ in range(2):  # a click that lands before the kernel is connected runs nothing: press again
            run_all(page)
            try:
                eventually(lambda: started(page), 60, f"Run All of {name} to start", interval=0.5)
                break
            except AssertionError:
                continue
        eventually(lambda: finished(page), timeout, f"Run All of {name} to finish", interval=1.0)
    except AssertionError as failure:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"failed-{name}.png"))
        raise AssertionError(f"{failure}\nprompts: {prompts(page)}\n"
                             f"{page.locator('.jp-Notebook').inner_text()[-2000:]}") from None


def no_errors(page) -> None:
    text = page.locator(".jp-Notebook").inner_text()
    for marker in ERRORS:
        assert marker not in text, f"the notebook shows {marker!r}:\n{text[-3000:]}"
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0, \
        "a cell wrote to stderr: " + " / ".join(
            page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts())


def charts(page):
    return page.locator(".jp-OutputArea-output img")


def save_and_reopen(page, workshop, name: str) -> None:
    page.keyboard.press("Control+s")
    page.wait_for_function("() => !document.title.startsWith('*') && "
                           "!document.querySelector('.jp-mod-dirty')", timeout=30_000)
    # Shut the kernel down as an attendee closing the notebook would; what reopens is only what was saved.
    page.locator(".lm-MenuBar-itemLabel", has_text="Kernel").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Shut Down Kernel").first.click()
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], "
                           ".jp-Notebook-ExecutionIndicator[data-status='unknown']", timeout=30_000)
    open_notebook(page, workshop, name)


def screenshot_charts(page, stem: str) -> list[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(charts(page).count()):
        chart = charts(page).nth(index)
        chart.scroll_into_view_if_needed()
        path = SCREENSHOTS / f"{stem}-chart{index + 1}.png"
        page.screenshot(path=str(path))
        written.append(path)
    return written


def test_lab3_runs_all_in_the_browser_and_reopens_with_its_pictures(page, workshop) -> None:
    open_notebook(page, workshop, "03-nlb-headless.ipynb")
    run_until_finished(page, "03-nlb-headless", 240)
    no_errors(page)
    text = page.locator(".jp-Notebook").inner_text()
    assert "✅ with DISABLE the request crosses the load balancer in the clear" in text
    assert "3 × 503" in text  # the refused calls, shown in Step 5's own cell
    shown = charts(page).count()
    assert shown >= 1, "Lab 3's byte map is missing"
    screenshot_charts(page, "03-nlb-headless")
    # Displayed no wider than the column: a chart is never blown up past its own pixels.
    for index in range(shown):
        size = charts(page).nth(index).evaluate("img => [img.naturalWidth, img.clientWidth]")
        assert size[1] <= size[0], f"chart {index + 1} is scaled up from {size[0]} to {size[1]} px"

    save_and_reopen(page, workshop, "03-nlb-headless.ipynb")
    no_errors(page)
    assert charts(page).count() == shown


def test_the_live_view_stops_on_its_button_and_leaves_a_picture(page, workshop) -> None:
    open_notebook(page, workshop, LIVE_NOTEBOOK.name)
    run_until_finished(page, "live-view", 120)
    assert "collected at least 20 calls: True" in page.locator(".jp-Notebook").inner_text()
    status = page.locator(".widget-label", has_text="running")
    stop = page.locator("button.widget-button", has_text="Stop")
    # The status line and the buttons sit above the chart, within the first screen of the output.
    assert stop.is_enabled() and status.count() == 1
    assert stop.bounding_box()["y"] < page.locator(".jp-OutputArea-output .widget-image").bounding_box()["y"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(".jp-OutputArea-output .widget-image").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "live-view-running.png"))

    stop.click()
    # Stopped: the widget becomes a still of its last frame, an ordinary image output.
    eventually(lambda: page.locator("button.widget-button").count() == 0 and charts(page).count() == 1, 30,
               "the live view to turn into a picture after Stop", interval=0.25)
    charts(page).first.scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "live-view-stopped.png"))
    no_errors(page)

    save_and_reopen(page, workshop, LIVE_NOTEBOOK.name)
    no_errors(page)
    assert charts(page).count() == 1


def test_lab1_runs_all_and_its_live_view_is_saved_as_a_picture(page, workshop) -> None:
    open_notebook(page, workshop, "01-multi-primary.ipynb")
    run_until_finished(page, "01-multi-primary", 300)
    no_errors(page)
    # The distribution, the topology, the live view's last frame (stopped by its budget or the cleanup cell at the
    # latest) and the credentials: four pictures, and no widget left to break on reopening.
    eventually(lambda: charts(page).count() == 4, 30, "Lab 1's four charts, the live view's as a still")
    screenshot_charts(page, "01-multi-primary")
    save_and_reopen(page, workshop, "01-multi-primary.ipynb")
    no_errors(page)
    assert charts(page).count() == 4


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop make and JupyterLab under it (they share a process group)."""
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
