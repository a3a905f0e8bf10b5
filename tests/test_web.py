"""The detector in the browser: ``audios export-web``, the service's /ondevice routes, and on-device checks in
headless Chromium that must agree with the server to 1e-3 without uploading anything.

The browser tests need /usr/bin/chromium, /usr/bin/chromedriver and selenium (as tests/test_browser.py), the built
runtime (``npm --prefix web ci && npm --prefix web run build``) and the dev corpus; each is skipped with the
reason when absent. The unit tests need none of them: they use a tiny ONNX graph built here with ``onnx.helper``
and a stand-in runtime folder.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CHROMEDRIVER, CHROMIUM, headless_chromium, serve_in_thread, tone, write
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from audios import webexport
from audios.errors import ConfigError
from audios.webexport import BUILD_HINT, WebExportError, export_web

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
TOLERANCE = 1e-3  # |p_fake(browser) - p_fake(server)|, issue #12


def _tiny_detector(folder: Path, gain: float = 1000.0, bias: float = -5.0) -> Path:
    """A portable detector folder whose graph is llr = gain * mean(x^2) + bias (known answer, no torch)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("waveform", TensorProto.FLOAT, ["batch", "samples"])
    y = helper.make_tensor_value_info("llr", TensorProto.FLOAT, ["batch"])
    nodes = [
        helper.make_node("Mul", ["waveform", "waveform"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=0),
        helper.make_node("Mul", ["ms", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["llr"]),
    ]
    consts = [helper.make_tensor("gain", TensorProto.FLOAT, [], [gain]),
              helper.make_tensor("bias", TensorProto.FLOAT, [], [bias])]
    graph = helper.make_graph(nodes, "tiny", [x], [y], consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    (folder / "detector.json").write_text(json.dumps({
        "name": "tiny-energy", "format": "audios-portable", "sample_rate": 16000, "window_s": 4.0, "hop_s": 2.0,
        "threshold": 0.0, "aggregate": "mean", "min_duration_s": 0.05, "silence_peak": 1e-4}))
    return folder


@pytest.fixture
def tiny(tmp_path) -> Path:
    return _tiny_detector(tmp_path / "tiny")


@pytest.fixture
def fake_runtime(tmp_path, monkeypatch) -> Path:
    """A stand-in for the built runtime folder (file contents are markers, not a working runtime)."""
    folder = tmp_path / "runtime"
    folder.mkdir()
    for name in webexport.RUNTIME_FILES:
        (folder / name).write_bytes(f"// stand-in {name}\n".encode())
    monkeypatch.setattr(webexport, "RUNTIME_DIR", folder)
    return folder


# --- export-web and the routes (no browser) ------------------------------------------------------------------------

def test_export_web_writes_a_static_site(tmp_path, tiny, fake_runtime):
    report = export_web(tmp_path / "site", model_dir=tiny)
    site = tmp_path / "site"
    assert report.out_dir == site
    assert set(report.files) == {"index.html", "ondevice.json", "model.onnx", "detector.json", "static/app.js",
                                 "static/style.css", "static/favicon.svg", "static/ondevice/audios-ondevice.js",
                                 "static/ondevice/ort-wasm-simd-threaded.wasm"}
    assert report.total_bytes == sum(p.stat().st_size for p in site.rglob("*") if p.is_file())
    assert (site / "model.onnx").read_bytes() == (tiny / "model.onnx").read_bytes()
    assert (site / "static/ondevice/audios-ondevice.js").read_bytes() == \
        (fake_runtime / "audios-ondevice.js").read_bytes()
    manifest = json.loads((site / "ondevice.json").read_text())
    assert manifest["available"] is True and manifest["server"] is False and manifest["name"] == "tiny-energy"
    # Every URL the page will fetch is relative and lands on an exported file: the folder works from any path.
    for key in ("model_url", "config_url", "script_url", "wasm_url"):
        assert not manifest[key].startswith("/") and (site / manifest[key]).is_file(), key
    page = (site / "index.html").read_text()
    assert 'src="static/app.js"' in page and 'href="static/style.css"' in page and 'src="/' not in page
    assert all(oct(p.stat().st_mode)[-3:] == ("755" if p.is_dir() else "644") for p in site.rglob("*"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".site.")]  # the staging folder is gone


def test_export_web_refuses_what_it_cannot_do(tmp_path, tiny, fake_runtime):
    with pytest.raises(WebExportError, match="npm --prefix web ci && npm --prefix web run build"):
        export_web(tmp_path / "a", model_dir=tiny, runtime_dir=tmp_path / "not-built")
    assert not (tmp_path / "a").exists()
    with pytest.raises(WebExportError, match=r"no model\.onnx"):
        export_web(tmp_path / "b", model_dir=tmp_path)
    bad = tmp_path / "bad"
    shutil.copytree(tiny, bad)
    (bad / "detector.json").write_text(json.dumps({"sample_rate": 16000, "window_s": 0, "hop_s": 2, "threshold": 0}))
    with pytest.raises(ConfigError, match=r"detector\.json: field 'window_s' must be a positive number"):
        export_web(tmp_path / "c", model_dir=bad)

    unrelated = tmp_path / "notes"
    unrelated.mkdir()
    (unrelated / "keep.txt").write_text("mine")
    with pytest.raises(WebExportError, match="not empty"):
        export_web(unrelated, model_dir=tiny)
    with pytest.raises(WebExportError, match="not an earlier export"):
        export_web(unrelated, model_dir=tiny, overwrite=True)
    assert (unrelated / "keep.txt").read_text() == "mine"

    site = tmp_path / "site"
    export_web(site, model_dir=tiny)
    (site / "stale.txt").write_text("old")
    with pytest.raises(WebExportError, match="--force"):
        export_web(site, model_dir=tiny)
    export_web(site, model_dir=tiny, overwrite=True)
    assert not (site / "stale.txt").exists() and (site / "index.html").exists()


def test_cli_export_web(tmp_path, tiny, fake_runtime):
    from audios.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["export-web", str(tmp_path / "site"), "--model", str(tiny)])
    assert result.exit_code == 0, result.output
    assert "index.html" in result.output and "http.server" in result.output
    result = runner.invoke(app, ["export-web", str(tmp_path / "site"), "--model", str(tiny)])
    assert result.exit_code == 2 and "--force" in result.output
    shutil.rmtree(fake_runtime)
    result = runner.invoke(app, ["export-web", str(tmp_path / "other"), "--model", str(tiny)])
    assert result.exit_code == 2 and "npm --prefix web ci" in result.output


def test_service_serves_the_on_device_model(tmp_path, tiny, fake_runtime):
    from audios.detect import load_detector
    from audios.serve import ServeConfig, create_app

    app = create_app(load_detector(str(tiny)), ServeConfig(tmp_root=str(tmp_path), ondevice_dir=str(tiny)))
    with TestClient(app) as client:
        info = client.get("/ondevice.json").json()
        assert info["available"] and info["server"] and info["name"] == "tiny-energy" and info["reason"] is None
        assert client.get("/" + info["model_url"]).content == (tiny / "model.onnx").read_bytes()
        assert client.get("/" + info["config_url"]).json()["name"] == "tiny-energy"
        assert client.get("/" + info["script_url"]).status_code == 200
        for name in ("weights.npz", "..%2Fdetector.json", "MODEL_CARD.md"):
            r = client.get(f"/ondevice/{name}")
            assert r.status_code == 404 and r.json() == {"error": "not found"}, name
        shutil.rmtree(fake_runtime)
        info = client.get("/ondevice.json").json()
        assert info["available"] is False and BUILD_HINT in info["reason"]


# --- in Chromium ---------------------------------------------------------------------------------------------------

def _bundled_or_tiny(tmp_path_factory) -> Path:
    from audios.detect import BUNDLED_DIR

    if all((BUNDLED_DIR / n).is_file() for n in webexport.MODEL_FILES):
        return BUNDLED_DIR
    return _tiny_detector(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium for the module (flags as tests/test_browser.py; nothing is downloaded)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} not installed (scripts/install-browser.sh)")
    missing = webexport.missing_runtime()
    if missing:
        pytest.skip(f"in-browser runtime not built ({', '.join(missing)}): {BUILD_HINT}")
    with headless_chromium("1100,1400") as driver:
        yield driver


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """`audios serve` with the bundled detector (the tiny one if the bundle is absent) in a thread; every request
    the page makes is recorded as (method, path)."""
    from audios.detect import load_detector
    from audios.serve import ServeConfig, create_app

    model_dir = _bundled_or_tiny(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("serve")
    app = create_app(load_detector(str(model_dir)), ServeConfig(tmp_root=str(tmp), workers=1,
                                                                ondevice_dir=str(model_dir)))
    requests: list[tuple[str, str]] = []

    @app.middleware("http")
    async def record(request, call_next):
        requests.append((request.method, request.url.path))
        return await call_next(request)

    with serve_in_thread(app) as url:
        yield url, requests, model_dir


def _check_on_device(driver, path: Path) -> dict:
    """Choose the file in the page (device mode already on) and wait for the on-device result."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.execute_script("const r = document.getElementById('result'); delete r.dataset.pFake;")
    driver.find_element(By.ID, "file").send_keys(str(path))

    def finished(d):
        status = d.find_element(By.ID, "status").text.strip()
        if status.startswith("Error"):
            return {"error": status}
        data = d.execute_script("return Object.assign({}, document.getElementById('result').dataset)")
        return data if data.get("pFake") else False

    return WebDriverWait(driver, 40, poll_frequency=0.05).until(finished)


def _dev_files(dev_corpus: Path) -> list[Path]:
    """A 16 kHz file, a 22.05 kHz FLAC and a 24 kHz WAV (the last two resampled in the browser)."""
    import csv

    rows = list(csv.DictReader((dev_corpus / "manifest.csv").open()))

    def first(rate: str, fmt: str) -> Path:
        row = next(r for r in rows if r["sample_rate"] == rate and r["format"].lower() == fmt
                   and 3.0 < float(r["duration_s"]) < 9.0)
        return dev_corpus / row["path"]

    return [first("16000", "wav"), first("22050", "flac"), first("24000", "wav")]


def test_on_device_check_matches_the_server_and_uploads_nothing(service, chromium, dev_corpus, tmp_path):
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, requests, _ = service
    files = _dev_files(dev_corpus)
    chromium.get(url + "/")
    WebDriverWait(chromium, 10).until(lambda d: d.find_element(By.ID, "where-device").is_enabled())
    chromium.find_element(By.ID, "where-device").click()
    requests.clear()
    got = {p: _check_on_device(chromium, p) for p in files}
    silent = write(tmp_path / "silent.wav", np.zeros(16000, dtype=np.float32))
    refused = _check_on_device(chromium, silent)
    assert refused == {"error": "Error on this device: silent.wav: all samples are silent"}

    # The files never left the browser: the page fetched the runtime and the model, and posted nothing.
    assert not [r for r in requests if r[0] != "GET"], requests
    assert {path for _, path in requests} <= {"/ondevice/model.onnx", "/ondevice/detector.json",
                                              "/static/ondevice/audios-ondevice.js",
                                              "/static/ondevice/ort-wasm-simd-threaded.wasm"}, requests
    loaded = chromium.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(url + "/") for u in loaded), loaded  # no CDN
    assert [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"] == []

    for path in files:
        result = got[path]
        assert "error" not in result, (path, result)
        assert result["source"] == "device"
        with path.open("rb") as fh:
            server = httpx.post(url + "/v1/detect", files={"file": (path.name, fh)}, timeout=30).json()
        assert result["decision"] == server["decision"], path
        assert abs(float(result["pFake"]) - server["p_fake"]) <= TOLERANCE, (path, result, server["p_fake"])
        assert abs(float(result["score"]) - server["score"]) <= 0.02, path  # LLR units

    # What the page shows for the last file: verdict, probability and the per-window timeline.
    verdict = chromium.find_element(By.ID, "verdict").text
    assert verdict.split(" · ")[1] == f"p(fake) = {float(got[files[-1]]['pFake']):.3f}"
    points = chromium.execute_script("return document.querySelectorAll('#timeline .tl-point').length")
    assert points == len(server["windows"])
    assert "on this device" in chromium.find_element(By.ID, "latency").text
    ARTIFACTS.mkdir(exist_ok=True)
    height = chromium.execute_script("return document.body.scrollHeight")
    chromium.set_window_size(1100, min(max(height + 140, 900), 2000))
    assert chromium.save_screenshot(str(ARTIFACTS / "ondevice_page.png"))


def test_exported_site_runs_from_a_plain_static_server(service, chromium, dev_corpus, tmp_path):
    from selenium.webdriver.common.by import By

    from audios.audio import AudioConfig, load_audio
    from audios.detect import detect_signal, load_detector

    _, _, model_dir = service
    site = export_web(tmp_path / "site", model_dir=model_dir).out_dir
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        chromium.get(f"http://127.0.0.1:{httpd.server_port}/")
        path = _dev_files(dev_corpus)[1]
        result = _check_on_device(chromium, path)
        # No server behind the page: only the on-device option, already chosen.
        assert not chromium.find_element(By.ID, "where-server-label").is_displayed()
        assert chromium.find_element(By.ID, "where-device").is_selected()
        assert [e for e in chromium.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
    detector = load_detector(str(model_dir))
    expected = detect_signal(detector, load_audio(path, AudioConfig(sample_rate=detector.sample_rate)),
                             detector.sample_rate, path.name)
    assert result["decision"] == expected["decision"]
    assert abs(float(result["pFake"]) - expected["p_fake"]) <= TOLERANCE


def test_on_device_windows_follow_the_python_rules(service, chromium, tmp_path):
    """A generated 9.3 s tone: the same window bounds as audios.detect._windows, and a 30 ms clip is refused."""
    from audios.detect import _windows

    url, _, _ = service
    chromium.get(url + "/")
    chromium.execute_script("document.getElementById('where-device').disabled = false;"
                            "document.getElementById('where-device').click()")
    clip = write(tmp_path / "tone.wav", tone(300, 9.3))
    _check_on_device(chromium, clip)
    windows = chromium.execute_script("return [...document.querySelectorAll('#timeline .tl-point')].length")
    assert windows == len(_windows(int(9.3 * 16000), 64000, 32000)) == 4
    short = write(tmp_path / "short.wav", tone(300, 0.03))
    assert _check_on_device(chromium, short)["error"].endswith("30.0 ms is too short to judge (minimum 50 ms)")


# --- the resampler on its own (Node.js, no browser) ----------------------------------------------------------------

@pytest.mark.parametrize("rate", [22050, 24000, 44100, 8000])
def test_js_resampler_matches_soxr(tmp_path, rate):
    """web/src/resample.js against soxr HQ (the server's resampler) on tones across the transition band."""
    import subprocess

    import soxr

    node = shutil.which("node")
    if node is None:
        pytest.skip("node not installed")
    module = Path(__file__).resolve().parents[1] / "web" / "src" / "resample.js"
    t = np.arange(rate) / rate
    # Downsampling: tones across soxr's transition band (7.3-8 kHz), which the filter was fitted to. Upsampling
    # (not fitted: no dev file is below 16 kHz) is held to the pass band.
    freqs = [300, 3000, 7000, 7500, 7700, 7900] if rate > 16000 else [300, 2000, 3500]
    x = (sum(np.sin(2 * np.pi * f * t + f) for f in freqs) / len(freqs)).astype(np.float32)
    x.tofile(tmp_path / "in.f32")
    script = (f"import {{ readFileSync, writeFileSync }} from 'node:fs';"
              f"import {{ resample }} from '{module.as_uri()}';"
              f"const b = readFileSync('{tmp_path / 'in.f32'}'); const x = new Float32Array(b.buffer, b.byteOffset, "
              f"b.byteLength / 4); writeFileSync('{tmp_path / 'out.f32'}', resample(x, {rate}, 16000));")
    subprocess.run([node, "--input-type=module", "-e", script], check=True, timeout=60)
    ours = np.fromfile(tmp_path / "out.f32", dtype=np.float32)
    ref = soxr.resample(x, rate, 16000, quality="HQ")
    assert len(ours) == len(ref) == round(len(x) * 16000 / rate)
    err = ours - ref
    snr_db = 10 * np.log10(np.sum(ref**2) / np.sum(err**2))
    # Measured: SNR 62 dB at 22.05/44.1 kHz (mostly soxr's first output sample, which its multi-stage start
    # computes differently), 82 dB at 24 kHz, 94 dB at 8 kHz; away from the ends the error stays below 3.7e-4.
    assert snr_db > 58, snr_db
    assert np.abs(err[8:-8]).max() < 6e-4, np.abs(err[8:-8]).max()
