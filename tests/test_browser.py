"""The drawing page in real headless Chromium: draw a multi-stroke symbol with pointer events.

Needs Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them)
and the ``browser`` extra (selenium). Selenium is pointed at both binaries, so
it never tries to download a browser or a driver.

Set ``STROKES_SCREENSHOT=path.png`` to keep the screenshot (the README's
``docs/img/serve.png`` is made that way).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette")
webdriver = pytest.importorskip("selenium.webdriver")

from serving import running_server  # noqa: E402

from strokes.synthetic import WriterStyle, generate_ink  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1000,760", "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(browser):
    with running_server() as (host, port, _):
        browser.get(f"http://{host}:{port}/")
        yield browser


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def _draw(driver, canvas, ink, pointer="pen"):
    """Draw ``ink`` (strokes of [x, y, ...]) into the canvas with real pointer events."""
    from selenium.webdriver.common.actions import interaction
    from selenium.webdriver.common.actions.action_builder import ActionBuilder
    from selenium.webdriver.common.actions.pointer_input import PointerInput

    size = canvas.size
    pts = np.concatenate([s[:, :2] for s in ink])
    lo, span = pts.min(0), np.ptp(pts, 0).max()
    box = 0.6 * min(size["width"], size["height"])
    kind = interaction.POINTER_PEN if pointer == "pen" else interaction.POINTER_MOUSE
    actions = ActionBuilder(driver, mouse=PointerInput(kind, pointer), duration=5)
    for stroke in ink:
        # offsets from the canvas centre, in CSS pixels
        xy = (stroke[:, :2] - lo) / span * box - box / 2
        first = True
        for x, y in xy:
            actions.pointer_action.move_to(canvas, int(round(x)), int(round(y)))
            if first:
                actions.pointer_action.pointer_down()
                first = False
        actions.pointer_action.pointer_up()
        actions.pointer_action.pause(0.05)
    actions.perform()


def test_draw_a_multi_stroke_symbol_and_see_it_recognized(page, tmp_path):
    from selenium.webdriver.common.by import By

    driver = page
    _wait(driver, lambda d: "vgg_gap" in d.find_element(By.ID, "model").text)
    canvas = driver.find_element(By.ID, "pad")
    ink = generate_ink("\\pm", np.random.default_rng(0), WriterStyle())  # three strokes: -, |, -
    assert len(ink) == 3
    _draw(driver, canvas, ink)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready")
    strokes = driver.execute_script("return window.strokesApp.strokes.length")
    assert strokes == 3
    rows = driver.find_elements(By.CSS_SELECTOR, "#results .result")
    symbols = [r.get_attribute("data-symbol") for r in rows]
    assert len(symbols) == 5
    assert "\\pm" in symbols, symbols
    shot = Path(os.environ.get("STROKES_SCREENSHOT") or tmp_path / "serve.png")
    assert driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_undo_and_clear(page):
    from selenium.webdriver.common.by import By

    driver = page
    driver.find_element(By.ID, "clear").click()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "idle")
    canvas = driver.find_element(By.ID, "pad")
    ink = generate_ink("+", np.random.default_rng(1), WriterStyle())
    _draw(driver, canvas, ink, pointer="mouse")
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready")
    assert "+" in [r.get_attribute("data-symbol") for r in driver.find_elements(By.CSS_SELECTOR, "#results .result")]
    driver.find_element(By.ID, "undo").click()
    _wait(driver, lambda d: d.execute_script("return window.strokesApp.strokes.length") == 1)
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready")
    driver.find_element(By.ID, "clear").click()
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "idle")
    assert driver.find_elements(By.CSS_SELECTOR, "#results .result") == []


def test_phone_sized_screen(page):
    from selenium.webdriver.common.by import By

    driver = page
    driver.set_window_size(360, 640)
    try:
        canvas = driver.find_element(By.ID, "pad")
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert canvas.size["width"] >= 0.8 * width and canvas.size["width"] <= width
        scroll = driver.execute_script("return document.documentElement.scrollWidth")
        assert scroll <= width  # no horizontal scrolling
    finally:
        driver.set_window_size(1000, 760)
