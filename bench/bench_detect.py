"""Detection latency and throughput, measured side by side in one run.

1. The detector alone: latency per 4 s clip (p50/p95) and clips/s with BLAS/torch limited to 1 and 2 threads.
2. The service: `audios serve` started on 127.0.0.1 (a subprocess), N concurrent clients each sending a bounded
   number of 4 s uploads; p50/p95/p99 latency, errors and requests/s.

Targets (issue 9): bundled detector p50 under 50 ms per 4 s clip; service p99 under 1 s at 8 clients, 0 errors.

    python bench/bench_detect.py [--model SPEC] [--clips 40] [--clients 8] [--requests-per-client 10] [--out F.md]
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "corpus" / "dev"


def clips_4s(n: int, sample_rate: int = 16000) -> tuple[list[np.ndarray], str]:
    """n 4-second clips: cut from the dev corpus when present, else generated speech-like signals."""
    from audios.audio import load_audio

    out: list[np.ndarray] = []
    if (DEV / "manifest.csv").exists():
        import pandas as pd

        table = pd.read_csv(DEV / "manifest.csv")
        for path in table["path"]:
            x = load_audio(DEV / path)
            if len(x) >= 4 * sample_rate:
                out.append(x[: 4 * sample_rate])
            if len(out) == n:
                return out, "4 s crops of dev-corpus files"
    rng = np.random.default_rng(0)
    t = np.arange(4 * sample_rate) / sample_rate
    while len(out) < n:
        f0 = rng.uniform(90, 220)
        x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 10)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
        out.append((0.2 * x / np.max(np.abs(x)) + 0.005 * rng.standard_normal(len(t))).astype(np.float32))
    return out, "generated speech-like 4 s clips"


def bench_detector(spec: str | None, clips: list[np.ndarray], threads: int) -> dict:
    from threadpoolctl import threadpool_limits

    from audios.detect import detect_signal, load_detector

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    with threadpool_limits(threads):
        t0 = time.perf_counter()
        detector = load_detector(spec)
        load_s = time.perf_counter() - t0
        detect_signal(detector, clips[0], 16000)  # warm-up (lazy imports, first-call allocations)
        lat = []
        t0 = time.perf_counter()
        for x in clips:
            t = time.perf_counter()
            detect_signal(detector, x, 16000)
            lat.append((time.perf_counter() - t) * 1000)
        wall = time.perf_counter() - t0
    return {"name": detector.name, "threads": threads, "load_s": load_s, "p50_ms": float(np.percentile(lat, 50)),
            "p95_ms": float(np.percentile(lat, 95)), "clips_per_s": len(clips) / wall,
            "x_real_time": 4 * len(clips) / wall}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_service(spec: str | None, clip: np.ndarray, clients: int, per_client: int, workers: int) -> dict:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "audios", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--workers", str(workers), "--max-queue", str(4 * clients)]
    if spec:
        cmd += ["--model", spec]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            raise RuntimeError("service did not start within 60 s")
        buf = io.BytesIO()
        sf.write(buf, clip, 16000, format="WAV", subtype="PCM_16")
        body = buf.getvalue()
        with httpx.Client(timeout=30) as c:  # warm-up request
            c.post(f"{base}/v1/detect", content=body, headers={"content-type": "audio/wav"})
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()

        def client() -> None:
            with httpx.Client(timeout=30) as c:
                for _ in range(per_client):
                    t = time.perf_counter()
                    try:
                        r = c.post(f"{base}/v1/detect", content=body, headers={"content-type": "audio/wav"})
                        ok = r.status_code == 200 and "p_fake" in r.json()
                        err = None if ok else f"HTTP {r.status_code}"
                    except httpx.HTTPError as exc:
                        err = type(exc).__name__
                    with lock:
                        latencies.append((time.perf_counter() - t) * 1000)
                        if err:
                            errors.append(err)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        t0 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t0
        healthy = httpx.get(f"{base}/healthz", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return {"clients": clients, "requests": len(latencies), "errors": len(errors),
            "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
            "p99_ms": float(np.percentile(latencies, 99)), "req_per_s": len(latencies) / wall,
            "healthy_after": healthy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="detector spec (default: the bundled detector)")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=10)
    parser.add_argument("--service-workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    clips, source = clips_4s(args.clips)
    load = os.getloadavg()
    rows = [bench_detector(args.model, clips, t) for t in (1, 2)]
    service = bench_service(args.model, clips[0], args.clients, args.requests_per_client, args.service_workers)
    load_after = os.getloadavg()
    lines = [
        f"Clips: {len(clips)} {source}; model: {rows[0]['name']}; load average {load[0]:.1f} before, "
        f"{load_after[0]:.1f} after; {os.cpu_count()} cores.",
        "",
        "| detector | threads | load (s, first includes imports) | p50 ms / 4 s clip | p95 ms | clips/s | x real time |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *(f"| {r['name']} | {r['threads']} | {r['load_s']:.2f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
          f"{r['clips_per_s']:.1f} | {r['x_real_time']:.0f} |" for r in rows),
        "",
        f"Speed-up of 2 threads over 1 (clips/s): {rows[1]['clips_per_s'] / rows[0]['clips_per_s']:.2f}x.",
        "",
        "| service | clients | requests | errors | p50 ms | p95 ms | p99 ms | requests/s | healthy after |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| audios serve (workers {args.service_workers}) | {service['clients']} | {service['requests']} | "
        f"{service['errors']} | {service['p50_ms']:.0f} | {service['p95_ms']:.0f} | {service['p99_ms']:.0f} | "
        f"{service['req_per_s']:.1f} | {service['healthy_after']} |",
        "",
        f"Targets: detector p50 < 50 ms -> {'met' if rows[0]['p50_ms'] < 50 else 'NOT met'} (1 thread); "
        f"service p99 < 1000 ms with 0 errors at {service['clients']} clients -> "
        f"{'met' if service['p99_ms'] < 1000 and service['errors'] == 0 else 'NOT met'}.",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
