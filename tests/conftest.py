"""Shared fixtures: tiny generated audio written into tmp_path, and the dev corpus when present."""

from __future__ import annotations

import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DEV_CORPUS = SHARED / "corpus" / "dev"
AASIST_DIR = SHARED / "models" / "aasist"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


def tone(freq_hz: float = 440.0, duration_s: float = 1.0, sample_rate: int = 16000, amplitude: float = 0.5,
         phase: float = 0.0) -> np.ndarray:
    """A pure sine, float32."""
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def speechlike(duration_s: float = 1.0, sample_rate: int = 16000, f0_hz: float = 120.0, seed: int = 0,
               amplitude: float = 0.3) -> np.ndarray:
    """A crude voiced signal: harmonics of a wobbling F0 with an amplitude envelope and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(round(duration_s * sample_rate))
    t = np.arange(n) / sample_rate
    f0 = f0_hz * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) * 0.8 + 0.2
    x = x * env + 0.01 * rng.standard_normal(n)
    return (amplitude * x / np.max(np.abs(x))).astype(np.float32)


def write(path: Path, x: np.ndarray, sample_rate: int = 16000, **kwargs) -> Path:
    """Write audio, creating parent folders; format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sample_rate, **kwargs)
    return path


@pytest.fixture
def dev_corpus() -> Path:
    if not (DEV_CORPUS / "manifest.csv").exists():
        pytest.skip(f"dev corpus not found at {DEV_CORPUS} (it lives in ../shared/corpus/dev beside the checkout)")
    return DEV_CORPUS


@pytest.fixture
def aasist_dir() -> Path:
    if not (AASIST_DIR / "reference_io.npz").exists():
        pytest.skip(f"AASIST reference weights not found at {AASIST_DIR}")
    return AASIST_DIR


# --- servers and browsers on 127.0.0.1 -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app) -> Iterator[str]:
    """Run an ASGI ``app`` with uvicorn in a thread on a free loopback port; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 15 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def headless_chromium(window: str = "1100,1500", extra_flags: tuple[str, ...] = ()) -> Iterator[object]:
    """Debian's Chromium through chromedriver: headless, no sandbox, no background networking, fresh profile;
    nothing is downloaded (Selenium Manager offline)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    mp = pytest.MonkeyPatch()
    mp.setenv("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="audios-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", f"--window-size={window}", *extra_flags):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        driver.set_page_load_timeout(20)
        try:
            yield driver
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
        mp.undo()
