"""The web page of ``agecurriculum serve`` in a real browser: headless Chromium, driven by Selenium.

The page is opened from a real server of the shipped model, scikit-image's astronaut photo is chosen in its file
input, and the test waits for the drawn result: one box and its label on the canvas (checked on the page's state,
the DOM and the canvas pixels) and the age-group bar chart. Screenshots go to ``test-artifacts/`` (git-ignored);
``serve-page.png`` is the one docs/serve.rst shows. Skipped, with the reason, without Chromium and chromedriver
(Debian: ``apt-get install chromium chromium-driver``), Selenium or the serve extra.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from inference_helpers import ASTRONAUT_FACE, iou
from PIL import Image
from skimage import data as skdata

from agecurriculum.serve import INSTALL_HINT, missing_extra

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
LABEL = re.compile(r"^(female|male) [01]\.\d\d, \d+-\d+ \(\d+ y\)$")
# Chromium flags that work as root in a container, offline: no sandbox (root), no GPU, no network of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no Chromium and chromedriver on PATH (Debian: apt-get install chromium chromium-driver)",
    ),
    pytest.mark.skipif(bool(missing_extra()), reason=f"the serve extra is not installed: {INSTALL_HINT}"),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="Selenium is not installed (pip install selenium)")


def astronaut_file(tmp_path: Path) -> Path:
    """scikit-image's astronaut.png where it ships (a public-domain NASA photo), else written from its array."""
    shipped = Path(skdata.__file__).resolve().parents[1] / "data" / "astronaut.png"
    if shipped.is_file():
        return shipped
    path = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def url():
    from agecurriculum.inference import DEFAULT_RELEASE_DIR, Predictor
    from agecurriculum.serve.app import create_app, serving

    predictor = Predictor.from_release(backend="torch", workers=2)
    with serving(create_app(predictor, DEFAULT_RELEASE_DIR, "torch")) as base:
        yield base


@pytest.fixture
def browser(tmp_path):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}", "--window-size=1000,1000"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, script: str, timeout: float = 90.0):
    """The value of ``script`` (a JS expression) once it is truthy."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: d.execute_script(f"return {script};"))


def test_a_dropped_photo_comes_back_with_its_box_label_and_chart(url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    browser.get(f"{url}/")
    wait_for(browser, "window.agecurriculum && window.agecurriculum.model")
    assert "efficientnet-lite0" in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "files").send_keys(str(astronaut_file(tmp_path)))
    [drawn] = wait_for(browser, "window.agecurriculum.drawn.length && window.agecurriculum.drawn")
    assert drawn["error"] is None and drawn["name"] == "astronaut.png"
    assert drawn["boxes"] == 1 and len(drawn["labels"]) == 1 and LABEL.match(drawn["labels"][0]), drawn["labels"]
    [face] = drawn["result"]["faces"]
    assert iou(face["box"], ASTRONAUT_FACE) > 0.7

    card = browser.find_element(By.CSS_SELECTOR, "#results .card")
    assert card.get_attribute("data-state") == "done" and card.get_attribute("data-boxes") == "1"
    assert card.find_element(By.CSS_SELECTOR, ".face .label").text == drawn["labels"][0]
    assert card.find_element(By.CSS_SELECTOR, ".message").text == "1 face(s)"
    bars = card.find_elements(By.CSS_SELECTOR, ".bars .bar")
    assert len(bars) == 8
    top = card.find_element(By.CSS_SELECTOR, ".bars .bin.top").text
    assert top == "{}-{}".format(*face["age_range"])

    # The canvas holds the photo at full size with the box in the gender's colour along the box's left edge.
    x0, y0, x1, y1 = face["box"]
    pixels = browser.execute_script(
        "const c = document.querySelector('#results canvas'); const ctx = c.getContext('2d');"
        "const at = (x, y) => Array.from(ctx.getImageData(x, y, 1, 1).data).slice(0, 3);"
        f"return {{size: [c.width, c.height], edge: at({x0 + 1}, {(y0 + y1) // 2}), inside: at({(x0 + x1) // 2}, "
        f"{(y0 + y1) // 2})}};"
    )
    assert pixels["size"] == [512, 512]
    colour = {"female": [230, 60, 140], "male": [40, 120, 230]}[face["gender"]]
    assert max(abs(a - b) for a, b in zip(pixels["edge"], colour)) <= 2, pixels
    assert max(abs(a - b) for a, b in zip(pixels["inside"], colour)) > 30  # the face itself is not painted over

    ARTIFACTS.mkdir(exist_ok=True)
    card.find_element(By.CSS_SELECTOR, "details summary").click()  # the JSON shown too
    browser.execute_script("window.scrollTo(0, 0);")
    shot = ARTIFACTS / "serve-page.png"
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")

    # A phone-sized window: nothing wider than the screen, and the photo fits it.
    browser.set_window_size(390, 844)
    width = browser.execute_script("return document.documentElement.clientWidth;")
    assert browser.execute_script("return document.documentElement.scrollWidth;") <= width
    assert browser.execute_script("return document.querySelector('#results canvas').clientWidth;") <= width
    browser.save_screenshot(str(ARTIFACTS / "serve-page-phone.png"))


def test_an_unusable_file_shows_its_error(url, browser, tmp_path):
    from selenium.webdriver.common.by import By

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is no picture")
    browser.get(f"{url}/")
    browser.find_element(By.ID, "files").send_keys(str(broken))
    [drawn] = wait_for(browser, "window.agecurriculum.drawn.length && window.agecurriculum.drawn")
    assert drawn["error"] == "broken.png: not an image (unrecognised format)" and drawn["boxes"] == 0
    card = browser.find_element(By.CSS_SELECTOR, "#results .card")
    assert card.get_attribute("data-state") == "error"
    assert card.find_element(By.CSS_SELECTOR, ".message").text == drawn["error"]
