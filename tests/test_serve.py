"""The detection service, through TestClient/httpx, with a small known-answer detector (no bundled model needed)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import shutil
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from conftest import tone
from fastapi.testclient import TestClient
from scipy.special import expit

from audios.errors import ConfigError
from audios.serve import ServeConfig, create_app

SR = 16000


class HfDetector:
    """Scores a signal by its share of energy above 4 kHz: tones are "real", white noise is "fake".

    score = 10 * (0.1 - hf_fraction): a pure low tone gives +1, white noise (half its energy above 4 kHz at
    16 kHz) gives -4. Optional ``delay_s`` makes each call slow; ``active``/``peak`` count concurrent calls.
    """

    name = "hf-test"
    sample_rate = SR
    window_s = 1.0
    hop_s = 0.5
    threshold = 0.0

    def __init__(self, delay_s: float = 0.0, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.active = 0
        self.peak = 0
        self.calls = 0
        self._lock = threading.Lock()

    def score_signals(self, signals: list[np.ndarray]) -> np.ndarray:
        with self._lock:
            self.active += 1
            self.calls += 1
            self.peak = max(self.peak, self.active)
        try:
            if self.fail:
                raise RuntimeError("secret internal detail /etc/passwd")
            time.sleep(self.delay_s)
            out = []
            for x in signals:
                power = np.abs(np.fft.rfft(x)) ** 2
                freqs = np.fft.rfftfreq(len(x), 1 / SR)
                out.append(10 * (0.1 - power[freqs >= 4000].sum() / power.sum()))
            return np.asarray(out)
        finally:
            with self._lock:
                self.active -= 1

    def info(self) -> dict:
        return {"name": self.name, "version": "0.0-test", "kind": "test", "threshold": self.threshold,
                "window_s": self.window_s, "hop_s": self.hop_s, "sample_rate": SR, "calibrated": True,
                "card": "Test detector: high-frequency energy share.", "size_bytes": 0, "n_params": 0,
                "path": "/secret/server/path/model.joblib"}


def noise(duration_s: float, amplitude: float = 0.3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (amplitude * rng.standard_normal(int(duration_s * SR))).clip(-1, 1).astype(np.float32)


def encode(x: np.ndarray, fmt: str = "WAV", sample_rate: int = SR, **kw) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, sample_rate, format=fmt, **kw)
    return buf.getvalue()


@pytest.fixture
def serve(tmp_path):
    """Factory: (client, app, detector) for a config; every response body is checked for leaked tracebacks."""
    clients = []

    def make(detector=None, raise_server_exceptions: bool = True, **config):
        detector = detector or HfDetector()
        app = create_app(detector, ServeConfig(tmp_root=str(tmp_path), **config))
        client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
        client.__enter__()
        clients.append(client)
        return client, app, detector

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def post_file(client, data: bytes, filename: str = "clip.wav", content_type: str = "audio/wav", **params):
    return client.post("/v1/detect", params=params, files={"file": (filename, data, content_type)})


def assert_clean(response: httpx.Response) -> None:
    assert "Traceback" not in response.text
    assert 'File "' not in response.text
    assert "/secret/" not in response.text


def test_healthz_and_model_info(serve):
    client, app, _ = serve(max_upload_bytes=1234, max_duration_s=42)
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["model"] == "hf-test"
    m = client.get("/v1/model").json()
    assert m["name"] == "hf-test" and m["version"] == "0.0-test" and m["threshold"] == 0.0
    assert m["card"].startswith("Test detector")
    assert m["limits"] == {"max_upload_bytes": 1234, "max_duration_s": 42, "request_timeout_s": 60.0}
    assert "path" not in m  # no server filesystem paths in responses
    assert_clean(client.get("/v1/model"))


def test_good_wav_multipart_is_real_with_known_timeline(serve):
    client, app, det = serve()
    r = post_file(client, encode(tone(220, 3.0)), filename="tone.wav")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "real" and body["path"] == "tone.wav" and body["model"] == "hf-test"
    assert body["score"] == pytest.approx(1.0, abs=0.01)
    assert body["p_fake"] == pytest.approx(1 - expit(1.0), abs=1e-3)
    assert body["duration_s"] == pytest.approx(3.0)
    # 1 s windows every 0.5 s over 3 s: starts 0, 0.5, ..., 2.0.
    assert [w["start_s"] for w in body["windows"]] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert body["flagged_regions"] == [] and body["latency_ms"] >= 0
    assert "spectrogram_png" not in body


def test_raw_body_noise_is_fake(serve):
    client, _, _ = serve()
    r = client.post("/v1/detect", content=encode(noise(2.0)), headers={"content-type": "audio/wav"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["decision"] == "fake" and body["p_fake"] > 0.95 and body["path"] == "upload"
    assert body["flagged_regions"] == [{"start_s": 0.0, "end_s": 2.0}]


def test_partly_fake_recording_flags_the_fake_half(serve):
    client, _, _ = serve()
    x = np.concatenate([tone(220, 2.0), noise(2.0)])
    body = post_file(client, encode(x), spectrogram=1).json()
    # Windows starting at 1.5 s and later hold noise; the ones before are pure tone.
    assert body["flagged_regions"] == [{"start_s": 1.5, "end_s": 4.0}]
    assert [w["p_fake"] > 0.5 for w in body["windows"]] == [False, False, False, True, True, True, True]
    png = base64.b64decode(body["spectrogram_png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000


def test_compressed_uploads_are_decoded(serve):
    client, _, _ = serve()
    r = client.post("/v1/detect", content=encode(tone(300, 1.5), "FLAC"), headers={"content-type": "audio/flac"})
    assert r.status_code == 200 and r.json()["decision"] == "real"
    # What a browser's MediaRecorder sends: Opus in WebM, labelled with codec parameters.
    av = pytest.importorskip("av")
    buf = io.BytesIO()
    with av.open(buf, "w", format="webm") as out:
        stream = out.add_stream("libopus", rate=48000)
        x = tone(300, 1.5, sample_rate=48000)[None, :]
        frame = av.AudioFrame.from_ndarray(x, format="flt", layout="mono")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    r = post_file(client, buf.getvalue(), filename="recording.webm", content_type="audio/webm;codecs=opus")
    assert r.status_code == 200, r.text
    assert r.json()["decision"] == "real" and r.json()["duration_s"] == pytest.approx(1.5, abs=0.1)


@pytest.mark.parametrize("case", ["empty", "random", "truncated-flac", "silent", "no-file-field", "text-as-audio"])
def test_bad_uploads_get_422_with_a_clear_error(serve, case):
    client, app, _ = serve()
    rng = np.random.default_rng(1)
    flac = encode(tone(300, 2.0), "FLAC")
    if case == "no-file-field":
        body = (b'--XyZ\r\nContent-Disposition: form-data; name="comment"\r\n\r\nhello\r\n--XyZ--\r\n')
        r = client.post("/v1/detect", content=body, headers={"content-type": "multipart/form-data; boundary=XyZ"})
        r2 = client.post("/v1/detect", data={"comment": "hello"})  # urlencoded form: wrong content type
        assert r2.status_code == 415
    else:
        data = {"empty": b"", "random": rng.bytes(20000), "truncated-flac": flac[:60],
                "silent": encode(np.zeros(SR, dtype=np.float32)), "text-as-audio": b"just some text\n" * 100}[case]
        r = client.post("/v1/detect", content=data, headers={"content-type": "application/octet-stream"})
    assert r.status_code == 422, r.text
    message = r.json()["error"]
    expected = {"empty": "empty", "random": "not readable audio", "truncated-flac": "not readable audio",
                "silent": "silent", "no-file-field": "no file part", "text-as-audio": "not readable audio"}[case]
    assert expected in message
    assert str(app.state.tmp_dir) not in message  # server paths are replaced
    assert_clean(r)
    assert list(app.state.tmp_dir.iterdir()) == []


def test_flac_truncated_mid_stream_is_refused_or_shorter(serve):
    client, _, _ = serve()
    flac = encode(noise(4.0), "FLAC")
    r = client.post("/v1/detect", content=flac[: len(flac) // 2], headers={"content-type": "audio/flac"})
    # libsndfile either stops with an error (422) or returns the frames it could decode: never 500.
    assert r.status_code in (200, 422), r.text
    if r.status_code == 200:
        assert r.json()["duration_s"] < 4.0
    assert_clean(r)


def test_too_long_is_422(serve):
    client, app, _ = serve(max_duration_s=2.0)
    r = post_file(client, encode(tone(220, 3.0)))
    assert r.status_code == 422 and "too long" in r.json()["error"]
    assert "2 s" in r.json()["error"]
    assert post_file(client, encode(tone(220, 1.5))).status_code == 200
    assert list(app.state.tmp_dir.iterdir()) == []


def test_too_large_is_413_before_decoding(serve):
    client, app, det = serve(max_upload_bytes=10_000)
    wav = encode(tone(220, 1.0))  # 32 kB of 16-bit samples
    r = client.post("/v1/detect", content=wav, headers={"content-type": "audio/wav"})
    assert r.status_code == 413 and "10000 bytes limit" in r.json()["error"]
    assert post_file(client, wav).status_code == 413

    # No Content-Length (chunked): bytes are counted while reading and reading stops at the cap.
    sent = []

    def chunks():
        for i in range(0, len(wav), 4096):
            sent.append(i)
            yield wav[i:i + 4096]

    r = client.post("/v1/detect", content=chunks(), headers={"content-type": "audio/wav"})
    assert r.status_code == 413, r.text
    assert det.calls == 0  # nothing was decoded or scored
    assert list(app.state.tmp_dir.iterdir()) == []
    small = encode(tone(220, 0.25))  # 8 kB
    assert client.post("/v1/detect", content=small, headers={"content-type": "audio/wav"}).status_code == 200


@pytest.mark.parametrize("content_type", ["text/plain", "application/json", "image/png"])
def test_wrong_content_type_is_415(serve, content_type):
    client, _, det = serve()
    r = client.post("/v1/detect", content=encode(tone(220, 1.0)), headers={"content-type": content_type})
    assert r.status_code == 415 and content_type in r.json()["error"]
    assert det.calls == 0


def test_client_filename_never_touches_the_filesystem(serve, tmp_path):
    client, app, _ = serve()
    r = post_file(client, encode(tone(220, 1.0)), filename="../../../evil.wav")
    assert r.status_code == 200 and r.json()["path"] == "evil.wav"
    r = post_file(client, encode(tone(220, 1.0)), filename="..\\..\\windows.wav")
    assert r.status_code == 200 and r.json()["path"] == "windows.wav"
    assert app.state.tmp_dir.parent == tmp_path
    assert sorted(p.name for p in tmp_path.iterdir()) == [app.state.tmp_dir.name]
    assert list(app.state.tmp_dir.iterdir()) == []


def test_unexpected_errors_are_500_without_details(serve):
    client, app, _ = serve(detector=HfDetector(fail=True), raise_server_exceptions=False)
    r = post_file(client, encode(tone(220, 1.0)))
    assert r.status_code == 500
    assert r.json() == {"error": "internal error; the request could not be completed"}
    assert "secret" not in r.text
    assert_clean(r)
    assert list(app.state.tmp_dir.iterdir()) == []
    r = client.get("/nope")
    assert r.status_code == 404 and r.json() == {"error": "not found"}
    r = client.post("/v1/detect", params={"spectrogram": "maybe"}, content=b"x")
    assert r.status_code == 422 and "spectrogram" in r.json()["error"]


async def _post_many(app, n: int, data: bytes) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
        return await asyncio.gather(*[
            client.post("/v1/detect", content=data, headers={"content-type": "audio/wav"}) for _ in range(n)])


def test_concurrent_requests_queue_on_a_pool_of_two(tmp_path):
    det = HfDetector(delay_s=0.05)
    app = create_app(det, ServeConfig(workers=2, max_queue=16, tmp_root=str(tmp_path)))
    try:
        responses = asyncio.run(_post_many(app, 8, encode(tone(220, 2.0))))
    finally:
        app.state.pool.shutdown()
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.json()["decision"] == "real" for r in responses)
    assert det.peak == 2  # the pool ran two at a time, never more
    assert list(app.state.tmp_dir.iterdir()) == []


def test_full_queue_gives_503(tmp_path):
    det = HfDetector(delay_s=0.3)
    app = create_app(det, ServeConfig(workers=1, max_queue=1, tmp_root=str(tmp_path)))
    try:
        responses = asyncio.run(_post_many(app, 6, encode(tone(220, 1.0))))
    finally:
        app.state.pool.shutdown()
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) <= {200, 503}
    assert all("busy" in r.json()["error"] for r in responses if r.status_code == 503)
    assert det.peak == 1
    assert list(app.state.tmp_dir.iterdir()) == []


def test_request_timeout_gives_504_and_the_file_is_still_removed(serve):
    client, app, det = serve(detector=HfDetector(delay_s=1.0), request_timeout_s=0.3)
    t0 = time.perf_counter()
    r = post_file(client, encode(tone(220, 1.0)))
    assert r.status_code == 504 and "timeout" in r.json()["error"]
    assert time.perf_counter() - t0 < 0.9
    deadline = time.perf_counter() + 5
    while list(app.state.tmp_dir.iterdir()) and time.perf_counter() < deadline:
        time.sleep(0.05)
    assert list(app.state.tmp_dir.iterdir()) == []


def test_slow_upload_hits_the_request_timeout(tmp_path):
    det = HfDetector()
    app = create_app(det, ServeConfig(request_timeout_s=0.3, tmp_root=str(tmp_path)))
    wav = encode(tone(220, 1.0))

    async def trickle():
        yield wav[:1000]
        await asyncio.sleep(1.0)
        yield wav[1000:]

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/v1/detect", content=trickle(), headers={"content-type": "audio/wav"})

    try:
        r = asyncio.run(go())
    finally:
        app.state.pool.shutdown()
    assert r.status_code == 504 and "upload took longer" in r.json()["error"]
    assert det.calls == 0 and list(app.state.tmp_dir.iterdir()) == []


def test_openapi_docs_and_page_are_local(serve):
    client, _, _ = serve()
    schema = client.get("/openapi.json").json()
    assert {"/v1/detect", "/v1/model", "/healthz"} <= set(schema["paths"])
    detect = schema["paths"]["/v1/detect"]["post"]
    assert "spectrogram" in json.dumps(detect["parameters"])
    assert {"multipart/form-data", "audio/*"} <= set(detect["requestBody"]["content"])
    assert {"413", "415", "422", "503", "504"} <= set(detect["responses"])
    for url in ("/", "/docs", "/static/app.js", "/static/style.css", "/static/docs.js"):
        r = client.get(url)
        assert r.status_code == 200, url
        # Everything is served from here: no CDN, no external script, font or stylesheet.
        assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text, url
    page = client.get("/").text
    assert 'id="file"' in page and 'id="verdict"' in page and 'id="record"' in page


def test_temp_folder_is_removed_at_shutdown(tmp_path):
    app = create_app(HfDetector(), ServeConfig(tmp_root=str(tmp_path)))
    with TestClient(app) as client:
        assert post_file(client, encode(tone(220, 1.0))).status_code == 200
        assert app.state.tmp_dir.exists()
    assert not app.state.tmp_dir.exists()


def test_temp_folder_is_removed_when_the_app_is_dropped(tmp_path):
    import gc

    app = create_app(HfDetector(), ServeConfig(tmp_root=str(tmp_path)))
    folder = app.state.tmp_dir
    app.state.pool.shutdown()
    assert folder.exists()
    del app
    gc.collect()
    assert not folder.exists()


def test_config_validates_itself():
    for bad in ({"workers": 0}, {"max_queue": -1}, {"max_upload_bytes": 0}, {"request_timeout_s": 0},
                {"aggregate": "max"}, {"max_duration_s": -1}):
        with pytest.raises(ConfigError):
            ServeConfig(**bad)


def test_cli_serve_builds_the_app_and_runs_uvicorn(monkeypatch):
    import uvicorn
    from typer.testing import CliRunner

    import audios.cli.serve  # noqa: F401  (registers the command)
    import audios.detect
    from audios.cli.app import app as cli_app

    calls = {}
    monkeypatch.setattr(audios.detect, "load_detector",
                        lambda spec, backend: (calls.update(spec=spec, backend=backend), HfDetector())[1])
    monkeypatch.setattr(uvicorn, "run", lambda service, **kw: calls.update(app=service, **kw))
    result = CliRunner().invoke(cli_app, ["serve", "--model", "x.joblib", "--port", "9123", "--workers", "3",
                                          "--max-upload-mb", "1", "--backend", "torch"])
    assert result.exit_code == 0, result.output
    assert calls["spec"] == "x.joblib" and calls["backend"] == "torch" and calls["port"] == 9123 and calls["host"] == "127.0.0.1"
    config = calls["app"].state.config
    assert config.workers == 3 and config.max_upload_bytes == 1024 * 1024
    calls["app"].state.pool.shutdown()
    shutil.rmtree(calls["app"].state.tmp_dir)
    bad = CliRunner().invoke(cli_app, ["serve", "--workers", "0"])
    assert bad.exit_code == 2 and "workers" in bad.output


def test_real_bundled_detector(tmp_path):
    from audios.detect import load_detector

    try:
        detector = load_detector(None)
    except ConfigError as exc:
        pytest.skip(f"bundled detector not available: {exc}")
    app = create_app(detector, ServeConfig(tmp_root=str(tmp_path)))
    with TestClient(app) as client:
        r = post_file(client, encode(tone(220, 2.0)))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["decision"] in ("fake", "real") and 0 <= body["p_fake"] <= 1
        assert body["threshold"] == pytest.approx(detector.threshold)
        assert client.get("/v1/model").json()["name"] == detector.name


def test_released_aasist_l_through_the_service(aasist_dir, tmp_path):
    """A real network end to end: the released AASIST-L checkpoint scores an upload (uncalibrated, threshold 0)."""
    from audios.detect import load_detector

    detector = load_detector(f"aasist-l={aasist_dir / 'AASIST-L.pth'}")
    app = create_app(detector, ServeConfig(tmp_root=str(tmp_path), workers=1))
    with TestClient(app) as client:
        r = post_file(client, encode(tone(220, 5.0, sample_rate=22050), sample_rate=22050))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "aasist-l-released" and body["threshold"] == 0.0
        assert body["decision"] == ("fake" if body["score"] < 0 else "real")
        assert body["p_fake"] == pytest.approx(1 - expit(body["score"]), abs=1e-6)
        assert len(body["windows"]) == 2  # 5 s with 4.04 s windows every 2.02 s: starts 0 and 0.96
        info = client.get("/v1/model").json()
        assert info["n_params"] > 10_000 and "path" not in info
