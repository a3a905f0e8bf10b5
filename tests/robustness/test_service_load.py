"""The detection service (``audios serve``) over a real loopback socket, with the bundled default detector.

A child process loads ``audios.detect.load_detector()`` and runs ``create_app`` under uvicorn on 127.0.0.1
(a port the child binds itself, so no other process can take it first). Running it apart keeps the test
runner's own memory (pytest, hypothesis, schemathesis) out of the RSS read from ``/proc/<pid>/status``.

1. Contract: schemathesis draws requests from the service's own ``/openapi.json`` for every operation
   (valid data, and invalid data where the operation has inputs). No response may be a 5xx; every response
   must match the schema (status code listed, content type, body); invalid data must be refused with a 4xx;
   no response may carry a traceback or a server path. Generated bodies are never decodable audio, so a
   second strategy sends a real clip with generated query flags and requires 200.
2. Load: rounds of 16 uploads released at once by a barrier; every answer must be 200 and equal to what
   ``detect_signal`` gives in this process for the same decoded clip (decision, score, windows, duration).
   The 16 clips have 16 distinct scores, so an answer sent to the wrong request would be caught.
3. Memory and state: after a warm-up round the child's RSS is the baseline; after the measured rounds it must
   be back within ``RSS_TOLERANCE_MB``, with no pending jobs, no leftover upload files and no logged error.

The numbers (requests, latency percentiles, RSS) go to stderr; RELIABILITY.md ("Service under load") records
a run of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import speechlike, tone
from hypothesis import HealthCheck, Phase, given, settings

from audios.audio import AudioConfig, load_audio
from audios.detect import BUNDLED_DIR, detect_signal, load_detector

httpx = pytest.importorskip("httpx", reason="the service load test needs httpx (pip install 'audios[serve]')")
pytest.importorskip("uvicorn", reason="the service load test needs uvicorn (pip install 'audios[serve]')")
pytest.importorskip("fastapi", reason="the service load test needs fastapi (pip install 'audios[serve]')")
requests = pytest.importorskip("requests", reason="the contract test needs requests (installed with schemathesis)")
schemathesis = pytest.importorskip("schemathesis", reason="the contract test needs schemathesis "
                                   "(pip install schemathesis)")

from audios.serve import ServeConfig  # noqa: E402  (needs fastapi, checked above)

SR = 16000
CONCURRENT = 16
MEASURED_ROUNDS = 4  # 64 measured uploads after one warm-up round
# Capacity is workers + max_queue = 18 >= 16, so a round must never see a 503.
SERVE = {"max_upload_bytes": 512 * 1024, "max_duration_s": 10.0, "request_timeout_s": 30.0, "workers": 2,
         "max_queue": CONCURRENT}
EXAMPLES_PER_OPERATION = 15
REAL_CLIP_EXAMPLES = 6
# RSS tolerance after the load, against the post-warm-up baseline. The warm-up round has already grown the
# allocator arenas of both worker threads and uvicorn's buffers to their 16-at-once size, so what remains is
# noise (pymalloc pools, glibc trim timing): +0.1 to +0.6 MB measured over 64-96 uploads. Keeping each
# request's data would cost at least its 32-61 KB WAV body plus the decoded float32 copy (64-122 KB), about
# 8 MB over the 64 measured uploads; 4 MB (8x the noise) fails a leak of 64 KB or more per upload.
RSS_TOLERANCE_MB = 4.0
# The service and this process run the same decode and the same detector on the same bytes; the scores agree
# to float rounding (a multi-threaded inference backend may sum in another order: 1e-6 is far above that and
# far below the 1e-4 the reference scores are required to differ by).
SCORE_TOLERANCE = 1e-6

# The child: the bundled default detector under uvicorn, on a socket it binds to 127.0.0.1:0; it writes the
# port to a file (atomically) once the app is built. Warnings and errors (including the app's
# "unexpected error" log) go to stderr, which the parent reads afterwards.
SERVER = textwrap.dedent(
    """
    import json, logging, os, socket, sys
    import uvicorn
    from audios.detect import load_detector
    from audios.serve import ServeConfig, create_app

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    port_file, config = sys.argv[1], ServeConfig(**json.loads(sys.argv[2]))
    app = create_app(load_detector(None), config)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    with open(port_file + ".part", "w") as f:
        f.write(str(sock.getsockname()[1]))
    os.replace(port_file + ".part", port_file)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[sock])
    """
)

REPO = Path(__file__).resolve().parents[2]


def _clips() -> list[np.ndarray]:
    """16 small known clips (1.0-1.9 s): voiced-like signals and pure tones of different pitches and lengths."""
    out = []
    for i in range(CONCURRENT):
        duration_s = 1.0 + 0.06 * i
        if i % 2 == 0:
            out.append(speechlike(duration_s, SR, f0_hz=100 + 8 * i, seed=i))
        else:
            out.append(tone(180 + 37 * i, duration_s, SR, amplitude=0.4))
    return out


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status")


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """A live service: dict with base url, pid, upload root, stderr log, clip bytes and reference answers."""
    if not Path("/proc/self/status").exists():
        pytest.skip("RSS is read from /proc/<pid>/status (Linux only)")
    root = tmp_path_factory.mktemp("service-load")
    tmp_root = root / "uploads"
    tmp_root.mkdir()
    port_file, log_path = root / "port", root / "server.log"
    config = {**SERVE, "tmp_root": str(tmp_root)}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port_file), json.dumps(config)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=root)
    try:
        # While the child starts, compute the reference answers here: the same bytes, decoded and scored
        # the way the service does it (load_audio with the service's AudioConfig, then detect_signal).
        detector = load_detector(None)
        serve_config = ServeConfig(**config)
        audio_config = AudioConfig(sample_rate=detector.sample_rate, max_duration_s=serve_config.max_duration_s)
        clips, refs = [], []
        for i, x in enumerate(_clips()):
            path = root / f"clip-{i}.wav"
            sf.write(path, x, SR, subtype="PCM_16")
            clips.append(path.read_bytes())
            refs.append(detect_signal(detector, load_audio(path, audio_config), detector.sample_rate,
                                      path.name, serve_config.detect_config()))
        gaps = np.diff(np.sort([r["score"] for r in refs]))
        assert gaps.min() > 100 * SCORE_TOLERANCE, f"reference scores too close to tell answers apart: {gaps}"
        assert {r["decision"] for r in refs} == {"real", "fake"}, "the clips should get both verdicts"

        deadline = time.monotonic() + 60
        base = None
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            if base is None and port_file.exists():
                base = f"http://127.0.0.1:{int(port_file.read_text())}"
            if base is not None:
                try:
                    if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not come up in 60 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        folders = list(tmp_root.iterdir())
        assert len(folders) == 1 and folders[0].name.startswith("audios-serve-"), folders
        short = root / "short.wav"  # 0.5 s: keeps the one saliency map (explain=1) under a second or two
        sf.write(short, speechlike(0.5, SR, seed=99), SR, subtype="PCM_16")
        yield {"base": base, "pid": proc.pid, "rss_ready_mb": _rss_mb(proc.pid), "upload_dir": folders[0],
               "log": log_path, "clips": clips, "refs": refs, "short_clip": short.read_bytes()}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _assert_no_leak(text: str, service: dict) -> None:
    for leak in ("Traceback", 'File "', str(service["upload_dir"].parent), "audios-serve-", str(BUNDLED_DIR),
                 str(REPO)):
        assert leak not in text, f"the response leaks {leak!r}: {text[:400]}"


def _drive(strategy, service: dict, session, checks: list, tally: dict[int, int], max_examples: int,
           want: range) -> int:
    """Send ``max_examples`` requests drawn from ``strategy`` and check each; the number sent."""
    sent = 0

    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate))
    @given(case=strategy)
    def run(case) -> None:
        nonlocal sent
        sent += 1
        response = case.call(base_url=service["base"], session=session, timeout=30)
        tally[response.status_code] = tally.get(response.status_code, 0) + 1
        where = f"{case.as_curl_command()} -> {response.status_code} {response.text[:300]}"
        assert response.status_code < 500, where
        assert response.status_code in want, where
        _assert_no_leak(response.text, service)
        case.validate_response(response, checks=checks)

    run()
    return sent


def test_contract_from_openapi(service) -> None:
    """Every generated request gets a schema-conformant, non-5xx answer; invalid input gets a 4xx."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.generation import GenerationMode
    from schemathesis.specs.openapi.checks import (content_type_conformance, negative_data_rejection,
                                                   response_schema_conformance, status_code_conformance)

    t0 = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{service['base']}/openapi.json")
    operations = {op.label: op for op in (r.ok() for r in schema.get_all_operations())}
    assert set(operations) == {"GET /healthz", "GET /v1/model", "POST /v1/detect"}
    conformance = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance]
    session = requests.Session()
    tally: dict[int, int] = {}
    sent: dict[str, int] = {}
    for label, op in operations.items():
        sent[f"{label} valid"] = _drive(op.as_strategy(GenerationMode.POSITIVE), service, session, conformance,
                                        tally, EXAMPLES_PER_OPERATION, range(200, 500))
    # Invalid data exists only for an operation with inputs (the two GETs take none).
    detect = operations["POST /v1/detect"]
    sent["POST /v1/detect invalid"] = _drive(detect.as_strategy(GenerationMode.NEGATIVE), service, session,
                                             [*conformance, negative_data_rejection], tally,
                                             EXAMPLES_PER_OPERATION, range(400, 500))
    # A real clip as multipart and as raw bytes, with generated spectrogram/segments flags: always 200 and a
    # body that matches the Detection schema. explain stays off here (one saliency map re-scores dozens of
    # occluded copies, 1-3 s of CPU) and is exercised once below, on a 0.5 s clip with every flag on.
    clip = service["clips"][0]
    real = (detect.as_strategy(body={"file": clip}, media_type="multipart/form-data", query={"explain": False})
            | detect.as_strategy(body=clip, media_type="application/octet-stream", query={"explain": False}))
    sent["POST /v1/detect real clip"] = _drive(real, service, session, conformance, tally, REAL_CLIP_EXAMPLES,
                                               range(200, 201))
    short = service["short_clip"]
    once = detect.as_strategy(body=short, media_type="application/octet-stream",
                              query={"explain": True, "spectrogram": True, "segments": True})
    sent["POST /v1/detect all flags"] = _drive(once, service, session, conformance, tally, 1, range(200, 201))
    seconds = time.monotonic() - t0
    sys.stderr.write(f"\ncontract: {sum(sent.values())} requests {sent}; statuses {dict(sorted(tally.items()))}; "
                     f"{seconds:.1f} s\n")
    assert sent["POST /v1/detect valid"] >= 10 and sent["POST /v1/detect invalid"] >= 10, sent
    assert tally.get(200, 0) >= REAL_CLIP_EXAMPLES and tally.get(422, 0) > 0, tally


def _upload(service: dict, i: int, barrier: threading.Barrier) -> tuple[int, dict, float]:
    """POST clip ``i`` once every thread of the round is ready; (status, body, client latency in s)."""
    with httpx.Client(timeout=60) as client:
        barrier.wait(timeout=30)
        t = time.perf_counter()
        r = client.post(f"{service['base']}/v1/detect",
                        files={"file": (f"clip-{i}.wav", service["clips"][i], "audio/wav")})
        latency_s = time.perf_counter() - t
    _assert_no_leak(r.text, service)
    return r.status_code, r.json(), latency_s


def _round(service: dict, pool: ThreadPoolExecutor) -> list[float]:
    """16 uploads at once; each must be 200 and equal to its reference answer. The client latencies."""
    barrier = threading.Barrier(CONCURRENT)
    results = list(pool.map(lambda i: _upload(service, i, barrier), range(CONCURRENT)))
    errors = [(i, status, body) for i, (status, body, _) in enumerate(results) if status != 200]
    assert not errors, errors
    for i, (_, body, _) in enumerate(results):
        ref = service["refs"][i]
        assert body["path"] == f"clip-{i}.wav", (i, body["path"])
        assert body["decision"] == ref["decision"], (i, body, ref)
        assert abs(body["score"] - ref["score"]) <= SCORE_TOLERANCE, (i, body["score"], ref["score"])
        assert abs(body["p_fake"] - ref["p_fake"]) <= SCORE_TOLERANCE, (i, body["p_fake"], ref["p_fake"])
        assert body["duration_s"] == pytest.approx(ref["duration_s"], abs=1e-9), i
        assert len(body["windows"]) == len(ref["windows"]), i
        assert body["model"] == "audios-default"
    return [latency for _, _, latency in results]


def test_concurrent_uploads_correct_and_memory_returns(service) -> None:
    """Rounds of 16 simultaneous uploads: 0 errors, every answer its reference; then RSS back near baseline."""
    pid = service["pid"]
    rss_start = _rss_mb(pid)
    with ThreadPoolExecutor(CONCURRENT) as pool:
        _round(service, pool)  # warm-up: worker-thread arenas, buffers and lazy imports reach their size
        rss_base = _rss_mb(pid)
        latencies: list[float] = []
        rss_rounds = []
        t0 = time.monotonic()
        for _ in range(MEASURED_ROUNDS):
            latencies += _round(service, pool)
            rss_rounds.append(_rss_mb(pid))
        load_s = time.monotonic() - t0
    health = httpx.get(f"{service['base']}/healthz", timeout=10).json()
    rss_after = _rss_mb(pid)
    p50, p99 = np.percentile(np.asarray(latencies) * 1000, [50, 99])
    n = len(latencies)
    sys.stderr.write(
        f"\nload: {n} uploads in {MEASURED_ROUNDS} rounds of {CONCURRENT} at once (+1 warm-up round), 0 errors, "
        f"{load_s:.2f} s ({n / load_s:.1f} req/s); client latency p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms; RSS (MB) when the service came up {service['rss_ready_mb']:.1f}, "
        f"at the start of this test {rss_start:.1f}, after warm-up {rss_base:.1f}, "
        f"after each round {[round(r, 1) for r in rss_rounds]}, at the end {rss_after:.1f} "
        f"({rss_after - rss_base:+.1f})\n")
    assert len(latencies) == MEASURED_ROUNDS * CONCURRENT
    assert health["status"] == "ok" and health["pending_jobs"] == 0, health
    assert list(service["upload_dir"].iterdir()) == [], "upload temp files were left behind"
    log = service["log"].read_text(errors="replace")
    assert "unexpected error" not in log and "Traceback" not in log and "ERROR" not in log, log[-3000:]
    assert rss_after - rss_base < RSS_TOLERANCE_MB, (rss_start, rss_base, rss_rounds, rss_after)
