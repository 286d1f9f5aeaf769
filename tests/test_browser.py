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

from datasets import star  # noqa: E402
from serving import running_server  # noqa: E402

from strokes.synthetic import WriterStyle, generate_ink  # noqa: E402

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _default_title() -> str:
    from strokes.recognizer import DEFAULT_MODEL
    from strokes.training.checkpoint import load_checkpoint

    return load_checkpoint(DEFAULT_MODEL).title


MODEL_TITLE = _default_title()  # what the page names the served default model, e.g. late_fusion (vgg_gap + tcn)
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
    _wait(driver, lambda d: MODEL_TITLE in d.find_element(By.ID, "model").text)
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


def test_copy_posts_nothing_without_collect(page):
    """On a server without --collect, copying a result sends no drawing to /api/collect, and the page says nothing about keeping drawings."""
    from selenium.webdriver.common.by import By

    driver = page
    driver.find_element(By.ID, "clear").click()
    driver.execute_script(
        "window.__requests = []; const f = window.fetch;"
        "window.fetch = (url, opts) => { window.__requests.push(String(url)); return f(url, opts); };"
    )
    _draw(driver, driver.find_element(By.ID, "pad"), generate_ink("+", np.random.default_rng(2), WriterStyle()))
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready")
    button = driver.find_element(By.CSS_SELECTOR, "#results .result button.copy")
    button.click()
    _wait(driver, lambda d: button.text in ("Copied", "Failed"))
    requests = driver.execute_script("return window.__requests")
    assert any("/api/classify" in r for r in requests)  # the instrumented fetch saw the page's requests
    assert not any("/api/collect" in r for r in requests), requests
    assert not driver.find_element(By.ID, "collect-note").is_displayed()
    row = driver.find_element(By.CSS_SELECTOR, "#results .result")
    assert "mode" in row.find_element(By.CSS_SELECTOR, ".meta").text  # package and mode are shown


# ------------------------------------------------------------ teaching through the page (issue 17)
def _symbols_shown(driver):
    from selenium.webdriver.common.by import By

    return [r.get_attribute("data-symbol") for r in driver.find_elements(By.CSS_SELECTOR, "#results .result")]


@pytest.fixture(scope="module")
def teach_page(browser, tmp_path_factory):
    store = tmp_path_factory.mktemp("browser-teach") / "user_symbols.sqlite"
    with running_server("--user-symbols", str(store), "--collect") as (host, port, _):
        browser.get(f"http://{host}:{port}/")
        yield browser, store


def test_teach_a_new_symbol_through_the_page(teach_page):
    """Type a label, draw a star 3 times with "Add drawing", press Teach; a fourth star then shows the label in the top 5."""
    import sqlite3

    from selenium.webdriver.common.by import By

    driver, store = teach_page
    label = "\\bigstar"
    _wait(driver, lambda d: MODEL_TITLE in d.find_element(By.ID, "model").text)
    _wait(driver, lambda d: d.find_element(By.ID, "teach").is_displayed())
    driver.find_element(By.CSS_SELECTOR, "#teach summary").click()
    driver.find_element(By.ID, "teach-label").send_keys(label)
    canvas = driver.find_element(By.ID, "pad")
    rng = np.random.default_rng(0)
    for i in range(3):
        _draw(driver, canvas, star(rng))
        _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready")
        assert label not in _symbols_shown(driver)  # not known before teaching
        driver.find_element(By.ID, "teach-add").click()
        _wait(driver, lambda d, n=i + 1: d.execute_script("return window.strokesApp.teachShots.length") == n)
        assert driver.execute_script("return window.strokesApp.strokes.length") == 0  # the pad was cleared
    assert len(driver.find_elements(By.CSS_SELECTOR, "#teach-shots canvas")) == 3
    submit = driver.find_element(By.ID, "teach-submit")
    assert submit.is_enabled()
    submit.click()
    _wait(driver, lambda d: "Taught" in d.find_element(By.ID, "teach-status").text)
    assert label in driver.find_element(By.ID, "teach-status").text
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM samples WHERE key = ?", (label,)).fetchone()[0] == 3
    _draw(driver, canvas, star(rng))
    _wait(driver, lambda d: d.execute_script("return document.body.dataset.state") == "ready")
    shown = _symbols_shown(driver)
    assert label in shown, shown
    row = driver.find_element(By.CSS_SELECTOR, f'#results .result[data-symbol="{label}"]'.replace("\\", "\\\\"))
    assert "taught" in row.text and "\\usepackage{amssymb}" in row.text and "math mode" in row.text
    # with --collect, copying a result posts the drawing under that symbol: one more row
    row.find_element(By.CSS_SELECTOR, "button.copy").click()
    _wait(driver, lambda d: "Kept this drawing" in d.find_element(By.ID, "status").text)
    with sqlite3.connect(store) as conn:
        assert conn.execute("SELECT count(*) FROM samples WHERE key = ?", (label,)).fetchone()[0] == 4


def test_teach_panel_fits_a_phone_sized_screen(teach_page):
    """At 360 px wide, with the teach form open, the page does not scroll sideways and the form's buttons stay on screen."""
    from selenium.webdriver.common.by import By

    driver, _ = teach_page
    driver.set_window_size(360, 640)
    try:
        if not driver.find_element(By.ID, "teach").get_attribute("open"):
            driver.find_element(By.CSS_SELECTOR, "#teach summary").click()
        width = driver.execute_script("return document.documentElement.clientWidth")
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width
        for id_ in ("teach-label", "teach-add", "teach-submit", "teach-reset"):
            box = driver.find_element(By.ID, id_).rect
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (id_, box, width)
    finally:
        driver.set_window_size(1000, 760)
