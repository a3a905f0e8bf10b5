"""End to end: the service on 127.0.0.1, its page in headless Debian Chromium, a file uploaded, the verdict read back.

Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian packages chromium, chromium-driver; see
scripts/install-browser.sh) and the selenium package. Nothing is downloaded: the driver path is given, so
Selenium Manager never runs. The final screenshot is saved to tests/artifacts/browser_page.png.
"""

from __future__ import annotations

import re
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import tone, write
from test_serve import HfDetector, noise

from audios.serve import ServeConfig, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"

pytestmark = [
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} not installed (scripts/install-browser.sh)"),
    pytest.mark.skipif(not CHROMEDRIVER.exists(), reason=f"{CHROMEDRIVER} not installed (Debian chromium-driver)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    """The service with the known-answer test detector, served by uvicorn in a thread; yields its base URL."""
    import uvicorn

    (tmp_path / "tmp").mkdir()
    app = create_app(HfDetector(), ServeConfig(tmp_root=str(tmp_path / "tmp"), workers=1))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 15 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser(monkeypatch):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: Selenium Manager must never download
    profile = tempfile.mkdtemp(prefix="audios-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1100,1500",
                 # A fake microphone (Chromium's beep generator) with permission granted, for the record button.
                 "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


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
