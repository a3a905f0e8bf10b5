"""The Chromium extension (extension/): loaded unpacked in headless Chromium, checked on a page served on 127.0.0.1.

Needs node + npm (to build extension/dist when it is missing or stale), /usr/bin/chromium, /usr/bin/chromedriver,
selenium, web/src/detector.js and the bundled ONNX detector (model.onnx + detector.json); skips, saying which is
missing, otherwise.

Selenium starts Chromium with the extension loaded (--load-extension); the test then speaks the DevTools protocol
directly (over the debugger address chromedriver reports) to reach what WebDriver cannot: the extension's service
worker, where it calls the same ``onMenuClicked`` handler that ``chrome.contextMenus.onClicked`` calls, and the result
popup window, which chromedriver does not list. A headless browser has no context menu to right-click, and the
right-click is also what grants the activeTab permission; the test gets that same grant from Chromium by triggering the
extension's toolbar action (``Extensions.triggerAction``, allowed by --enable-unsafe-extension-debugging), which also
exercises the toolbar flow. The result page's screenshot for a dev file goes to tests/artifacts/extension_popup.png.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import DEV_CORPUS, speechlike, tone, write

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "extension"
DIST = EXT / "dist"
DETECTOR_JS = ROOT / "web" / "src" / "detector.js"
MODEL_DIR = ROOT / "src" / "audios" / "data" / "default_detector"
MODEL_FILES = ("model.onnx", "detector.json")
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# The id Chromium derives from the public key in manifest.json (see test_manifest_key_fixes_the_extension_id).
EXTENSION_ID = "mpofmogmllakpnipkhhionldchffhnje"
TOLERANCE = 1e-3
TIMEOUT_S = 30.0


def _manifest() -> dict:
    return json.loads((EXT / "manifest.json").read_text())


def test_manifest_key_fixes_the_extension_id():
    # Chromium's id: the first 128 bits of SHA-256 of the DER public key, hex digits 0-f written as letters a-p.
    der = base64.b64decode(_manifest()["key"])
    digest = hashlib.sha256(der).hexdigest()[:32]
    assert "".join(chr(ord("a") + int(c, 16)) for c in digest) == EXTENSION_ID


def test_manifest_asks_for_no_blanket_host_access():
    manifest = _manifest()
    assert manifest["manifest_version"] == 3
    assert "activeTab" in manifest["permissions"] and "contextMenus" in manifest["permissions"]
    assert "host_permissions" not in manifest and "optional_host_permissions" not in manifest
    assert not any("://" in p or p == "<all_urls>" for p in manifest["permissions"])
    # onnxruntime-web compiles WebAssembly: MV3 extension pages need 'wasm-unsafe-eval', and nothing looser.
    csp = manifest["content_security_policy"]["extension_pages"]
    assert "'wasm-unsafe-eval'" in csp and "'unsafe-eval'" not in csp.replace("'wasm-unsafe-eval'", "")


# ---------------------------------------------------------------- build


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _build_is_stale() -> bool:
    info_path = DIST / "build-info.json"
    if not info_path.exists():
        return True
    info = json.loads(info_path.read_text())
    if info.get("detector_js_sha256") != _sha256(DETECTOR_JS):
        return True
    if info.get("model_sha256") != {f: _sha256(MODEL_DIR / f) for f in MODEL_FILES}:
        return True
    sources = [EXT / "manifest.json", EXT / "build.mjs", EXT / "package-lock.json", *EXT.glob("src/*"),
               *EXT.glob("icons/*")]
    return max(p.stat().st_mtime for p in sources) > info_path.stat().st_mtime


@pytest.fixture(scope="module")
def built() -> Path:
    """extension/dist, built now when missing or older than its sources."""
    for path, why in ((CHROMIUM, "Chromium"), (CHROMEDRIVER, "chromedriver (Debian chromium-driver)")):
        if not path.exists():
            pytest.skip(f"{path} not installed: {why} is needed to load the extension")
    pytest.importorskip("selenium.webdriver")
    pytest.importorskip("websocket")
    if not DETECTOR_JS.exists():
        pytest.skip(f"{DETECTOR_JS} not found: the in-browser detector the extension bundles")
    for f in MODEL_FILES:
        if not (MODEL_DIR / f).exists():
            pytest.skip(f"{MODEL_DIR / f} not found: the bundled ONNX detector the extension ships")
    if _build_is_stale():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            pytest.skip("extension/dist is missing or stale and node/npm are not installed to build it")
        if not (EXT / "node_modules" / "esbuild").exists():
            ci = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=EXT, capture_output=True, text=True,
                                timeout=300)
            if ci.returncode != 0:
                pytest.skip(f"`npm ci` in extension/ failed (offline?): {ci.stderr.strip()[-500:]}")
        run = subprocess.run([npm, "run", "build"], cwd=EXT, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"`npm run build` failed:\n{run.stdout}\n{run.stderr}"
    assert (DIST / "manifest.json").exists()
    return DIST


# ---------------------------------------------------------------- local sites


def _page(body: str) -> bytes:
    head = "<meta charset='utf-8'><title>test</title>"
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>".encode()


class _Site(SimpleHTTPRequestHandler):
    """Audio files by route, and test pages: /page?media=URL&link=URL (one <audio> and one link), /blob (an <audio>
    playing a blob: URL made by the page). No CORS headers anywhere."""

    files: dict[str, Path] = {}

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/page":
            media = query.get("media", "")
            link = query.get("link", "")
            self._send(_page(f"<audio id='media' controls preload='none' src='{media}'></audio>"
                             f"<p><a id='link' href='{link}'>the recording</a></p>"), "text/html")
        elif url.path == "/blob":
            self._send(_page("<audio id='media' controls></audio><script src='/blob.js'></script>"), "text/html")
        elif url.path == "/blob.js":
            script = ("fetch('/gen.wav').then(r => r.blob()).then(b => {"
                      " document.getElementById('media').src = URL.createObjectURL(b); });")
            self._send(script.encode(), "text/javascript")
        elif url.path in self.files:
            path = self.files[url.path]
            content_type = {".wav": "audio/wav", ".flac": "audio/flac", ".mp3": "audio/mpeg"}.get(path.suffix, "")
            self._send(path.read_bytes(), content_type or "application/octet-stream")
        else:
            self.send_error(404)


def _serve(files: dict[str, Path]) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Handler", (_Site,), {"files": files})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Two origins on 127.0.0.1: the test pages with their audio, and another port (another origin) without CORS."""
    folder = tmp_path_factory.mktemp("site")
    # 6 s of a voiced signal at 16 kHz (the model's rate): several 4 s windows, no resampling.
    gen = write(folder / "gen.wav", np.concatenate([speechlike(3.0, seed=1), 0.7 * speechlike(3.0, seed=2, f0_hz=180)]))
    other = write(folder / "other.wav", tone(330, 2.0))
    silent = write(folder / "silent.wav", np.zeros(16000, dtype=np.float32))
    files = {"/gen.wav": gen, "/silent.wav": silent}
    main, main_url = _serve(files)
    foreign, foreign_url = _serve({"/other.wav": other})
    yield {"url": main_url, "files": files, "gen": gen, "foreign_url": foreign_url}
    main.shutdown()
    foreign.shutdown()


# ---------------------------------------------------------------- browser + DevTools


class Cdp:
    """A DevTools protocol session over one target's websocket (page, service worker or the browser)."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self._ws = websocket.create_connection(ws_url, timeout=TIMEOUT_S, suppress_origin=True)
        self._id = 0

    def call(self, method: str, **params):
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            msg = json.loads(self._ws.recv())
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def evaluate(self, expression: str):
        out = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression[:80]}...: {out['exceptionDetails']}")
        return out["result"].get("value")

    def close(self) -> None:
        self._ws.close()


class Browser:
    def __init__(self, driver) -> None:
        self.driver = driver
        self.address = driver.capabilities["goog:chromeOptions"]["debuggerAddress"]
        version = json.load(urllib.request.urlopen(f"http://{self.address}/json/version"))
        self.cdp = Cdp(version["webSocketDebuggerUrl"])
        self.worker = Cdp(self._wait_target(lambda t: t["type"] == "service_worker"
                                            and t["url"].startswith(f"chrome-extension://{EXTENSION_ID}/"))
                          ["webSocketDebuggerUrl"])
        # The worker's target can show up before its script (and the chrome.* bindings) has run.
        deadline = time.monotonic() + TIMEOUT_S
        while not self.worker.evaluate("typeof chrome === 'object' && typeof onMenuClicked === 'function'"):
            if time.monotonic() > deadline:
                raise AssertionError("the extension's service worker did not start")
            time.sleep(0.05)

    def targets(self) -> list[dict]:
        return json.load(urllib.request.urlopen(f"http://{self.address}/json/list"))

    def _wait_target(self, pred, exclude: frozenset = frozenset()) -> dict:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            found = [t for t in self.targets() if pred(t) and t["id"] not in exclude]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError("no such DevTools target appeared within the timeout")

    def result_pages(self) -> frozenset:
        return frozenset(t["id"] for t in self.targets() if "/result.html" in t["url"])

    def wait_result_page(self, before: frozenset) -> tuple[str, dict]:
        """The new result page's URL and final state: its result JSON, or its error code and message."""
        target = self._wait_target(lambda t: t["type"] == "page" and "/result.html" in t["url"], exclude=before)
        page = Cdp(target["webSocketDebuggerUrl"])
        deadline = time.monotonic() + TIMEOUT_S
        state = None
        while time.monotonic() < deadline:
            state = page.evaluate("document.body ? document.body.dataset.state : null")
            if state in ("done", "error"):
                break
            time.sleep(0.05)
        out = page.evaluate("""({state: document.body.dataset.state, code: document.body.dataset.errorCode || null,
            error: document.getElementById('error').textContent,
            result: document.getElementById('result-json').textContent,
            chooser: Array.from(document.querySelectorAll('#media-list button')).map(b => b.textContent),
            dots: document.querySelectorAll('#timeline svg circle').length,
            verdict: document.getElementById('verdict-badge').textContent,
            shown_p: document.getElementById('p-fake').textContent,
            resources: performance.getEntriesByType('resource').map((e) => e.name)})""")
        out["page"] = page
        out["id"] = target["id"]
        if out["result"]:
            out["result"] = json.loads(out["result"])
        return target["url"], out

    def close_target(self, target_id: str) -> None:
        self.cdp.call("Target.closeTarget", targetId=target_id)

    def open(self, url: str) -> None:
        self.driver.get(url)

    def grant_active_tab(self, page_url: str) -> tuple[str, dict]:
        """Click the extension's toolbar button on the tab showing page_url: Chromium grants activeTab for it, as a
        right-click on the page would, and the extension opens its page-scan result page (returned)."""
        tabs = self.cdp.call("Target.getTargets", filter=[{"type": "tab"}])["targetInfos"]
        tab = next(t for t in tabs if t["url"] == page_url)
        before = self.result_pages()
        self.cdp.call("Extensions.triggerAction", id=EXTENSION_ID, targetId=tab["targetId"])
        return self.wait_result_page(before)

    def click_menu(self, info: dict, page_url: str) -> tuple[str, dict]:
        """Run the worker's contextMenus.onClicked handler with the info Chromium passes for a click on page_url."""
        before = self.result_pages()
        self.worker.evaluate(f"""(async () => {{
            const tabs = await chrome.tabs.query({{}});
            const tab = tabs.find((t) => t.url === {json.dumps(page_url)})
                || (await chrome.tabs.query({{active: true, lastFocusedWindow: true}}))[0];
            return onMenuClicked({json.dumps({**info, "pageUrl": page_url, "frameId": 0})}, tab);
        }})()""")
        return self.wait_result_page(before)


@pytest.fixture(scope="module")
def browser(built):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="audios-ext-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=900,800",
                 f"--load-extension={built}", f"--disable-extensions-except={built}",
                 # Lets the DevTools protocol trigger the toolbar action (Extensions.triggerAction).
                 "--enable-unsafe-extension-debugging"):
        options.add_argument(flag)
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download: the driver path is given
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield Browser(driver)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def python_detector():
    from audios.detect import load_detector

    return load_detector()


def _python_result(detector, path: Path) -> dict:
    from audios.detect import detect_path

    return detect_path(detector, path)


def _assert_same(browser_result: dict, expected: dict) -> None:
    assert browser_result["decision"] == expected["decision"]
    got, want = browser_result["p_fake"], expected["p_fake"]
    assert abs(got - want) < TOLERANCE, (got, want)
    assert len(browser_result["windows"]) == len(expected["windows"])
    for got, want in zip(browser_result["windows"], expected["windows"], strict=True):
        assert abs(got["start_s"] - want["start_s"]) < 0.01 and abs(got["end_s"] - want["end_s"]) < 0.01
        assert abs(got["p_fake"] - want["p_fake"]) < TOLERANCE, (got, want)


# ---------------------------------------------------------------- tests


def test_worker_registers_the_menu_items(browser):
    deadline = time.monotonic() + TIMEOUT_S
    menus = None
    while not menus and time.monotonic() < deadline:  # the worker registers them on install, asynchronously
        menus = browser.worker.evaluate("chrome.storage.session.get('menus').then((s) => s.menus)")
        time.sleep(0.05)
    by_id = {m["id"]: m for m in menus}
    assert set(by_id) == {"audios-check-media", "audios-check-link"}
    assert sorted(by_id["audios-check-media"]["contexts"]) == ["audio", "video"]
    assert by_id["audios-check-link"]["contexts"] == ["link"]
    assert {m["title"] for m in menus} == {"Check with audios"}


def test_click_on_an_audio_element_checks_its_src(browser, site, python_detector):
    page_url = f"{site['url']}/page?media=/gen.wav&link=/gen.wav"
    browser.open(page_url)
    src = browser.driver.execute_script("return document.getElementById('media').src")
    assert src == f"{site['url']}/gen.wav"
    info = {"menuItemId": "audios-check-media", "mediaType": "audio", "srcUrl": src}

    # Without the grant a click gives, the extension cannot read the page's origin: it has no host permissions.
    url, out = browser.click_menu(info, page_url)
    assert out["state"] == "error" and out["code"] == "no-access", out
    browser.close_target(out["id"])

    # The toolbar button on a page with one <audio>: granted activeTab, it finds the element and checks it.
    _, scanned = browser.grant_active_tab(page_url)
    assert scanned["state"] == "done", scanned
    assert scanned["result"]["src"] == src
    browser.close_target(scanned["id"])

    url, out = browser.click_menu(info, page_url)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["src"] == [src]
    assert out["state"] == "done", out
    expected = _python_result(python_detector, site["gen"])
    _assert_same(out["result"], expected)
    assert out["result"]["read_via"] in ("extension", "page")
    assert out["dots"] == len(expected["windows"])
    assert out["verdict"] == ("Likely AI-generated" if expected["decision"] == "fake" else "Likely human speech")
    assert out["shown_p"] == f"{100 * out['result']['p_fake']:.1f} %"
    # Runtime, wasm and model all come from the extension itself (no CDN); the media from the page's server.
    ext = f"chrome-extension://{EXTENSION_ID}/"
    assert all(u.startswith((ext, site["url"] + "/")) for u in out["resources"]), out["resources"]
    browser.close_target(out["id"])


def test_click_on_a_link_checks_its_target(browser, site, python_detector):
    page_url = f"{site['url']}/page?media=&link=/gen.wav"
    browser.open(page_url)
    href = browser.driver.execute_script("return document.getElementById('link').href")
    _, scanned = browser.grant_active_tab(page_url)
    browser.close_target(scanned["id"])
    url, out = browser.click_menu({"menuItemId": "audios-check-link", "linkUrl": href}, page_url)
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["src"] == [href]
    assert out["state"] == "done", out
    _assert_same(out["result"], _python_result(python_detector, site["gen"]))
    browser.close_target(out["id"])


def test_cross_origin_media_without_cors_is_refused_clearly(browser, site):
    foreign = f"{site['foreign_url']}/other.wav"
    page_url = f"{site['url']}/page?media={urllib.parse.quote(foreign, safe='')}&link="
    browser.open(page_url)
    _, scanned = browser.grant_active_tab(page_url)
    assert scanned["state"] == "error" and scanned["code"] == "cross-origin", scanned
    browser.close_target(scanned["id"])
    _, out = browser.click_menu({"menuItemId": "audios-check-media", "mediaType": "audio", "srcUrl": foreign},
                                page_url)
    assert out["state"] == "error" and out["code"] == "cross-origin", out
    assert site["foreign_url"] in out["error"] and "CORS" in out["error"]
    browser.close_target(out["id"])


def test_blob_stream_gets_a_cannot_read_message(browser, site):
    page_url = f"{site['url']}/blob"
    browser.open(page_url)
    deadline = time.monotonic() + 10
    src = ""
    while not src.startswith("blob:") and time.monotonic() < deadline:
        src = browser.driver.execute_script("return document.getElementById('media').src")
        time.sleep(0.05)
    assert src.startswith("blob:")
    _, out = browser.click_menu({"menuItemId": "audios-check-media", "mediaType": "audio", "srcUrl": src}, page_url)
    assert out["state"] == "error" and out["code"] == "stream", out
    assert "Cannot read this stream" in out["error"]
    browser.close_target(out["id"])


def test_silent_media_is_reported_not_judged(browser, site, python_detector):
    from audios.errors import SilentAudioError

    with pytest.raises(SilentAudioError):  # what `audios detect` says about the same file
        _python_result(python_detector, site["files"]["/silent.wav"])
    page_url = f"{site['url']}/page?media=/silent.wav&link="
    browser.open(page_url)
    _, out = browser.grant_active_tab(page_url)
    assert out["state"] == "error" and out["code"] == "audio", out
    assert "silent" in out["error"] and out["result"] == ""
    browser.close_target(out["id"])


def _dev_file(root: Path) -> Path:
    """A spoofed dev clip at 24 kHz (the page resamples it), 4-10 s long: the same one every run."""
    import csv

    with (root / "manifest.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["label"] == "spoof" and r["format"] == "wav"
                and r["sample_rate"] != "16000" and 4.0 < float(r["duration_s"]) < 10.0]
    if not rows:
        pytest.skip("no 4-10 s spoofed wav in the dev corpus")
    return root / sorted(rows, key=lambda r: r["path"])[0]["path"]


def test_dev_file_matches_python_and_saves_a_screenshot(browser, site, python_detector, dev_corpus):
    path = _dev_file(dev_corpus)
    site["files"]["/dev/" + path.name] = path  # served straight from the corpus, never copied
    page_url = f"{site['url']}/page?media=/dev/{urllib.parse.quote(path.name)}&link="
    browser.open(page_url)
    src = browser.driver.execute_script("return document.getElementById('media').src")
    _, scanned = browser.grant_active_tab(page_url)
    browser.close_target(scanned["id"])
    _, out = browser.click_menu({"menuItemId": "audios-check-media", "mediaType": "audio", "srcUrl": src}, page_url)
    assert out["state"] == "done", out
    _assert_same(out["result"], _python_result(python_detector, path))
    # The popup's own size (a headless window ignores the size asked for in chrome.windows.create).
    out["page"].call("Emulation.setDeviceMetricsOverride", width=560, height=640, deviceScaleFactor=1, mobile=False)
    shot = out["page"].call("Page.captureScreenshot", format="png")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "extension_popup.png").write_bytes(base64.b64decode(shot["data"]))
    browser.close_target(out["id"])
