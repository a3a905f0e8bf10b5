"""The light install: `pip install audios` (no extras) in a clean venv runs `audios detect` and `audios serve` with the
bundled detector through ONNX Runtime, with no torch, transformers or scikit-learn, and scores like the PyTorch path.

Builds a real virtual environment from this checkout (packages from PyPI, or pip's cache), so it is marked slow; it
skips with the reason when the index cannot be reached.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import free_port, speechlike, write

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("light") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], 120).check_returncode()
    py = venv / "bin" / "python"
    src = tmp_path_factory.mktemp("src") / "audios"
    # A copy without build outputs or the dev venv, as a user's `pip install .` of a clean checkout sees it.
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".venv", ".git", "node_modules", "runs", "*.egg-info",
                                                              "__pycache__", "build", "dist", ".pytest_cache"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    r = _run([str(py), "-m", "pip", "install", "-q", str(src)], 900, env=env)
    if r.returncode != 0:
        if "No matching distribution" in r.stderr or "Could not find a version" in r.stderr or \
                "NewConnectionError" in r.stderr or "Temporary failure" in r.stderr:
            pytest.skip(f"cannot reach the package index to build the light venv: {r.stderr.strip()[-300:]}")
        raise AssertionError(f"pip install of the light package failed:\n{r.stderr[-3000:]}")
    return venv


def test_light_venv_has_no_torch_sklearn_transformers(light_venv):
    py = light_venv / "bin" / "python"
    r = _run([str(py), "-c", "import importlib.util as u; print([m for m in ('torch', 'sklearn', 'transformers', "
              "'librosa', 'pandas') if u.find_spec(m)])"], 60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
    r = _run([str(light_venv / "bin" / "audios"), "manifest", "x"], 60)
    assert r.returncode == 2 and "audios[data]" in r.stderr  # research commands say what to install


def _inputs(tmp_path: Path, dev_root: Path | None) -> list[Path]:
    if dev_root is not None:
        rows = [ln.split(",")[0] for ln in (dev_root / "manifest.csv").read_text().splitlines()[1:]]
        return [dev_root / r for r in rows[::45]]  # 13 files across bona fide and spoof sources
    paths = []
    for i, f0 in enumerate((110, 180, 240)):
        p = tmp_path / f"s{i}.wav"
        write(p, speechlike(5.0, f0_hz=f0, seed=i))
        paths.append(p)
    return paths


def test_light_detect_scores_equal_the_pytorch_path(light_venv, tmp_path):
    pytest.importorskip("torch")
    from audios.detect import DetectConfig, detect_path, load_detector
    from tests.conftest import DEV_CORPUS

    dev = DEV_CORPUS if (DEV_CORPUS / "manifest.csv").exists() else None
    files = _inputs(tmp_path, dev)
    r = _run([str(light_venv / "bin" / "audios"), "detect", "--json", "--no-progress", *map(str, files)], 600)
    assert r.returncode == 0, r.stderr[-2000:]
    light = {str(Path(d["path"]).resolve()): d for d in json.loads(r.stdout)}
    reference = load_detector(backend="torch")
    assert len(light) == len(files)
    for f in files:
        ref = detect_path(reference, f, DetectConfig())
        got = light[str(f.resolve())]
        assert got["decision"] == ref["decision"], f
        assert abs(got["score"] - ref["score"]) < 1e-4, (f, got["score"], ref["score"])
        assert abs(got["p_fake"] - ref["p_fake"]) < 1e-4
        assert len(got["windows"]) == len(ref["windows"])


def _wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError("light `audios serve` did not come up in 60 s")


def test_light_serve_answers_a_request(light_venv, tmp_path):
    port = free_port()
    clip = tmp_path / "clip.wav"
    write(clip, speechlike(3.0, f0_hz=150, seed=7))
    proc = subprocess.Popen([str(light_venv / "bin" / "audios"), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(port)
        boundary = "audiosboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\n"
                "Content-Type: audio/wav\r\n\r\n").encode() + clip.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/detect", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
        assert answer["decision"] in ("real", "fake")
        assert 0.0 <= answer["p_fake"] <= 1.0 and np.isfinite(answer["score"])
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_light_serve_options_that_need_the_research_stack_say_so(light_venv, tmp_path):
    """?spectrogram=1 answers without the picture; ?segments=1 gets a 501 naming the missing package."""
    import urllib.error

    clip = tmp_path / "clip.wav"
    write(clip, speechlike(2.0, f0_hz=150, seed=8))
    port = free_port()
    proc = subprocess.Popen([str(light_venv / "bin" / "audios"), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(port)

        def post(query: str) -> tuple[int, dict]:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/detect?{query}", data=clip.read_bytes(),
                                         method="POST", headers={"Content-Type": "audio/wav"})
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        status, body = post("spectrogram=1")
        assert status == 200 and body["spectrogram_png"] is None and body["decision"] in ("real", "fake")
        status, body = post("segments=1")
        assert status == 501 and "audios[all]" in body["error"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
