"""End to end: the service on 127.0.0.1, its page in headless Debian Chromium, a file uploaded, the verdict read back.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium, chromium-driver; see
scripts/install-browser.sh) and the selenium package. Nothing is downloaded: the driver path is given, so
Selenium Manager never runs. The final screenshot is saved to tests/artifacts/browser_page.png.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import CHROMEDRIVER, CHROMIUM, headless_chromium, serve_in_thread, tone, write
from test_serve import HfDetector, noise

from audios.serve import ServeConfig, create_app

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (scripts/install-browser.sh)"),
    pytest.mark.skipif(not CHROMEDRIVER.exists(), reason=f"{CHROMEDRIVER} not installed (Debian chromium-driver)"),
]


@pytest.fixture
def server(tmp_path):
    """The service with the known-answer test detector, served by uvicorn in a thread; yields its base URL."""
    (tmp_path / "tmp").mkdir()
    app = create_app(HfDetector(), ServeConfig(tmp_root=str(tmp_path / "tmp"), workers=1))
    with serve_in_thread(app) as url:
        yield url, app


@pytest.fixture
def browser():
    # A fake microphone (Chromium's beep generator) with permission granted, for the record button.
    with headless_chromium("1100,1500", ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")
                           ) as driver:
        yield driver


def _upload_and_wait(driver, path: Path, previous: str) -> str:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.find_element(By.ID, "file").send_keys(str(path))

    def verdict_changed(d):
        text = d.find_element(By.ID, "verdict").text.strip()
        status = d.find_element(By.ID, "status").text.strip()
        if status.startswith("Error") or status.startswith("The upload failed"):
            raise AssertionError(f"the page reported: {status}")
        return text if text and text != previous else False

    return WebDriverWait(driver, 30, poll_frequency=0.1).until(verdict_changed)


def _check_docs_page(driver, url: str) -> None:
    """The local API docs page renders every operation from /openapi.json."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/docs")
    WebDriverWait(driver, 10).until(lambda d: len(d.find_elements(By.TAG_NAME, "h3")) >= 3)
    titles = [h.text for h in driver.find_elements(By.TAG_NAME, "h3")]
    assert {"POST /v1/detect", "GET /v1/model", "GET /healthz"} <= set(titles), titles
    assert "413: Upload too large" in driver.find_element(By.ID, "endpoints").text


def test_page_uploads_a_file_and_shows_the_verdict(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    url, app = server
    real = write(tmp_path / "human_tone.wav", tone(220, 2.0))
    # 2 s of tone then 2 s of white noise: the test detector calls the noise half fake.
    partly = write(tmp_path / "half_noise.wav", np.concatenate([tone(220, 2.0), noise(2.0)]))

    browser.get(url + "/")
    assert "audios" in browser.title
    text = _upload_and_wait(browser, real, previous="")
    assert re.fullmatch(r"REAL \(human\) · p\(fake\) = 0\.\d{3}", text), text

    text = _upload_and_wait(browser, partly, previous=text)
    assert re.fullmatch(r"FAKE \(machine-generated\) · p\(fake\) = [01]\.\d{3}", text), text
    assert "fake" in browser.find_element(By.ID, "verdict").get_attribute("class")
    assert browser.find_element(By.ID, "flagged").text == "1.5–4.0 s"
    assert re.search(r"\d+ ms scoring", browser.find_element(By.ID, "latency").text)
    assert "hf-test" in browser.find_element(By.ID, "model").text
    # The spectrogram PNG arrived and decoded in the browser.
    width = browser.execute_script("return document.getElementById('spectrogram').naturalWidth")
    assert width and width > 300

    # Everything the page loaded came from this server: no CDN.
    loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert loaded and all(u.startswith(url + "/") for u in loaded), loaded
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == [], errors
    assert list(app.state.tmp_dir.iterdir()) == []

    ARTIFACTS.mkdir(exist_ok=True)
    _check_docs_page(browser, url)
    browser.get(url + "/")
    _upload_and_wait(browser, partly, previous="")
    browser.execute_script("document.getElementById('result').scrollIntoView()")
    height = browser.execute_script("return document.body.scrollHeight")
    browser.set_window_size(1100, min(max(height + 160, 900), 2400))
    browser.execute_script("window.scrollTo(0, 0)")
    shot = ARTIFACTS / "browser_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000


def test_page_records_from_the_microphone(server, browser):
    """Record → MediaRecorder webm/ogg → upload → decoded by PyAV on the server → verdict shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, app = server
    browser.get(url + "/")
    button = browser.find_element(By.ID, "record")
    assert button.is_enabled(), browser.find_element(By.ID, "record-status").text
    button.click()
    WebDriverWait(browser, 10).until(lambda d: "recording" in d.find_element(By.ID, "record-status").text)
    time.sleep(1.5)
    button.click()

    def verdict(d):
        status = d.find_element(By.ID, "status").text.strip()
        if status.startswith("Error") or status.startswith("The upload failed"):
            raise AssertionError(f"the page reported: {status}")
        return d.find_element(By.ID, "verdict").text.strip()

    text = WebDriverWait(browser, 30, poll_frequency=0.1).until(verdict)
    assert re.fullmatch(r"(REAL \(human\)|FAKE \(machine-generated\)) · p\(fake\) = [01]\.\d{3}", text), text
    duration = float(browser.find_element(By.ID, "duration").text.split(" s")[0])
    assert 1.0 <= duration <= 5.0, duration
    assert list(app.state.tmp_dir.iterdir()) == []
