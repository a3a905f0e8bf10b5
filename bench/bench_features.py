"""Feature extraction speed and memory: a naive SSL baseline against ours, spectral throughput, peak RSS vs N.

Usage (from the repository root, .venv active; the defaults finish in about 17 minutes on 2 cores):

    python bench/bench_features.py [--corpus ../shared/corpus/dev] [--ssl-files 24] [--mix-files 48]
        [--rss-small 500] [--rss-large 5000] [--no-ssl] [--out /tmp/bench_features.md]

Every configuration runs in its own fresh child process (so each peak RSS is its own), one after another
in this one run, on the same files; the timed region excludes imports and model loading and starts from
the manifest. Children run with one BLAS/torch thread per process, so "cores" is the number of processes
(1, or the worker count) and x real time per core = audio seconds / (wall seconds * cores).

SSL (a randomly initialised wav2vec2-base: ``transformers.Wav2Vec2Config()`` defaults, 12 layers, 768 wide,
group-norm CNN, no attention mask; it costs what the real checkpoint costs):

* naive: files in manifest order, decoded one by one, batches of 8 zero-padded to their longest, one
  forward pass each of the model as transformers runs it, mean over frames; int8: PyTorch dynamic int8 on
  the Linear layers.
* ours: ``extract_features`` with the ``ssl`` extractor (recordings sorted by duration, windows bucketed
  into passes that pad at most 10%, padded frames left out of the mean, the CNN front end computed in
  cache-sized time chunks by ``audios.features.ssl_cnn``), one worker process, with a helper process decoding
  the next batches meanwhile; int8: Linear layers as naive plus the CNN in int8 with a scale per frame.

"cores" counts worker processes; the CPU column adds up user + system time of every process (the decoding
helper included), so x real time per CPU second is the fairer per-core figure when a helper runs.

Both in fp32 and with dynamic int8 (``quantize="int8"``), and ours also with bfloat16 autocast
(``quantize="bf16"``), on a random sample of dev files (in manifest order) and on a synthetic length mix
(speech-like clips of uniformly random 1-20 s).

Spectral: ``extract_features`` with ``spectral`` on every dev file, 1 and 2 worker processes, and on
``--rss-small`` / ``--rss-large`` synthetic 1-3 s clips for the peak RSS (flat if memory does not grow
with the corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "dev"
SR = 16000
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


# --- children: one configuration each, reporting wall time and peak RSS as one JSON line -------------------

def child(spec: dict) -> dict:
    import pandas as pd

    manifest = pd.read_parquet(spec["manifest"])
    audio_s = float(manifest["duration_s"].sum())
    kind = spec["kind"]
    if kind in ("naive", "ours"):  # torch only where it is used: it alone adds hundreds of MB of RSS
        import torch

        from audios.features.ssl import load_ssl_model

        torch.set_num_threads(1)

        # Not timed: each loads (and quantises) its model once before the clock starts.
        model = load_ssl_model(spec["model"], spec["quantize"] if kind == "ours" else "none", "cpu",
                               "chunked" if kind == "ours" else "stock").model  # naive: the CNN as transformers runs it
        if kind == "naive" and spec["quantize"] == "int8":
            # What a naive pipeline does: dynamic int8 on the Linear layers.
            model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
    if kind == "cosine":  # not timed: how close int8 and bf16 embeddings stay to fp32, on the first 4 files
        from audios.audio import AudioConfig, load_audio
        from audios.features.ssl import SslConfig, quantization_cosine
        from audios.manifest import audio_paths

        signals = [load_audio(p, AudioConfig(sample_rate=SR)) for p in audio_paths(manifest)[:4]]
        return {mode: quantization_cosine(SslConfig(model=spec["model"]), signals, mode).tolist()
                for mode in ("int8", "bf16")}
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    if kind == "naive":
        naive_ssl(manifest, model)
    else:
        from audios.features import get_extractor
        from audios.features.extract import extract_features

        if kind == "ours":
            ext = get_extractor("ssl", {"model": spec["model"], "quantize": spec["quantize"]})
        else:
            ext = get_extractor("spectral")
        with tempfile.TemporaryDirectory() as tmp:
            report = extract_features(manifest, ext, Path(tmp) / "out.parquet", cache_dir=Path(tmp) / "cache",
                                      workers=spec.get("workers", 1))
            assert report.n_computed == len(manifest), report.summary()
    wall = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    # VmHWM, not getrusage: ru_maxrss carries over the parent's high-water mark through fork + exec.
    self_kb = peak_rss_kb()
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # the largest worker process
    return {"wall_s": wall, "cpu_s": cpu, "audio_s": audio_s, "files": len(manifest),
            "peak_rss_mb": self_kb / 1024, "peak_worker_rss_mb": children_kb / 1024}


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (worker and decoding processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_kb() -> int:
    """This process's peak resident set size (VmHWM in /proc/self/status), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def naive_ssl(manifest, model) -> None:
    """The baseline: manifest order, batches of 8 padded to their longest, no masking, decode inline."""
    import numpy as np
    import torch

    from audios.audio import AudioConfig, load_audio
    from audios.features.ssl import NORM_EPS
    from audios.manifest import audio_paths

    paths = audio_paths(manifest)
    for start in range(0, len(paths), 8):
        signals = []
        for p in paths[start:start + 8]:
            x = load_audio(p, AudioConfig(sample_rate=SR)).astype(np.float64)
            signals.append(((x - x.mean()) / np.sqrt(x.var() + NORM_EPS)).astype(np.float32))
        padded = np.zeros((len(signals), max(len(x) for x in signals)), dtype=np.float32)
        for row, x in enumerate(signals):
            padded[row, :len(x)] = x
        with torch.inference_mode():
            model(input_values=torch.from_numpy(padded)).last_hidden_state.mean(dim=1).numpy()


def run_child(spec: dict) -> dict:
    env = {**os.environ, **{v: "1" for v in THREAD_VARS}, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"child {spec['kind']} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if spec["kind"] == "cosine":
        return result
    cores = spec.get("workers", 1)
    result["cores"] = cores
    result["xrt_per_core"] = result["audio_s"] / (result["wall_s"] * cores)
    result["xrt_per_cpu_s"] = result["audio_s"] / result["cpu_s"]
    print(f"  {spec['label']}: {result['wall_s']:.1f} s for {result['audio_s']:.0f} s of audio, "
          f"{result['xrt_per_core']:.1f}x real time per core ({result['xrt_per_cpu_s']:.1f}x per CPU second), "
          f"peak RSS {result['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    return result


# --- data ---------------------------------------------------------------------------------------------------

def synth_clips(folder: Path, n: int, low_s: float, high_s: float, seed: int) -> Path:
    """``n`` speech-like 16 kHz clips of uniformly random duration in [low_s, high_s], and their manifest."""
    import numpy as np

    import soundfile as sf

    from audios.manifest import build_manifest

    rng = np.random.default_rng(seed)
    for i in range(n):
        t = np.arange(int(rng.uniform(low_s, high_s) * SR)) / SR
        f0 = (80 + (i * 7) % 150) * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
        phase = 2 * np.pi * np.cumsum(f0) / SR
        x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        x = 0.3 * x / np.max(np.abs(x)) + 0.005 * rng.standard_normal(t.size)
        path = folder / ("bonafide" if i % 2 == 0 else "spoof") / f"c{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    table = build_manifest(folder, workers=2).table
    path = folder.parent / f"{folder.name}.parquet"
    table.to_parquet(path, index=False)
    return path


def padding_table(manifest_path: Path) -> tuple[float, float]:
    """Padding waste of naive batches of 8 in manifest order vs our bucketing (80 s budget, <= 10%)."""
    import pandas as pd

    from audios.features.batching import bucket_batches, fixed_batches, padding_waste

    lengths = [int(d * SR) for d in pd.read_parquet(manifest_path)["duration_s"]]
    ours = bucket_batches(lengths, 80 * SR, None, 0.1)
    return padding_waste(lengths, fixed_batches(len(lengths), 8)), padding_waste(lengths, ours)


# --- main ---------------------------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--ssl-files", type=int, default=24, help="Random dev files (seed 0) for the SSL runs.")
    ap.add_argument("--mix-files", type=int, default=48,
                    help="Synthetic 1-20 s clips for the SSL runs (48: six naive batches, so its padding waste is near "
                         "the 41%% expected of batches of 8, not a draw of one or two batches).")
    ap.add_argument("--rss-small", type=int, default=500)
    ap.add_argument("--rss-large", type=int, default=5000)
    ap.add_argument("--no-ssl", action="store_true", help="Skip the SSL runs.")
    ap.add_argument("--out", type=Path, default=None, help="Also write the markdown tables here.")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return 0
    if not (args.corpus / "manifest.csv").exists():
        print(f"dev corpus not found at {args.corpus}; nothing to measure", file=sys.stderr)
        return 0

    import pandas as pd

    from audios.manifest import build_manifest

    lines: list[str] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        print("building manifests (untimed) ...", file=sys.stderr, flush=True)
        dev = build_manifest(args.corpus, workers=2).table  # with sha256 and root, as `audios manifest` writes
        dev_path = tmp / "dev.parquet"
        dev.to_parquet(dev_path, index=False)
        rows: list[tuple[str, dict]] = []
        pads: list[tuple[str, float, float]] = []
        if not args.no_ssl:
            import transformers

            model = tmp / "wav2vec2-base-random"
            transformers.Wav2Vec2Model(transformers.Wav2Vec2Config()).save_pretrained(model)
            transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False).save_pretrained(model)
            sample = dev.sample(min(args.ssl_files, len(dev)), random_state=0).sort_index()
            sample_path = tmp / "dev-sample.parquet"
            sample.to_parquet(sample_path, index=False)
            mix_path = synth_clips(tmp / "mix", args.mix_files, 1.0, 20.0, seed=1)
            cosines = run_child({"kind": "cosine", "manifest": str(sample_path), "model": str(model)})
            for name, path in ((f"dev sample ({len(sample)} files)", sample_path),
                               (f"synthetic 1-20 s mix ({args.mix_files} files)", mix_path)):
                pads.append((name, *padding_table(path)))
                for quantize in ("none", "int8", "bf16"):
                    for kind in ("naive", "ours") if quantize != "bf16" else ("ours",):
                        label = f"ssl {kind} {'fp32' if quantize == 'none' else quantize}, {name}"
                        spec = {"kind": kind, "manifest": str(path), "model": str(model), "quantize": quantize,
                                "label": label}
                        rows.append((label, run_child(spec)))
        for workers in (1, 2):
            label = f"spectral, dev corpus ({len(dev)} files), {workers} worker(s)"
            rows.append((label, run_child({"kind": "spectral", "manifest": str(dev_path), "workers": workers,
                                           "label": label})))
        print("writing synthetic clips for the RSS runs (untimed) ...", file=sys.stderr, flush=True)
        big_path = synth_clips(tmp / "rss", args.rss_large, 1.0, 3.0, seed=2)
        small_path = tmp / "rss-small.parquet"
        pd.read_parquet(big_path).head(args.rss_small).to_parquet(small_path, index=False)
        for n, path in ((args.rss_small, small_path), (args.rss_large, big_path)):
            label = f"spectral, synthetic 1-3 s clips, N={n}, 1 worker"
            rows.append((label, run_child({"kind": "spectral", "manifest": str(path), "label": label})))
    load_after = os.getloadavg()

    lines.append(f"{os.cpu_count()} CPU cores, Python {platform.python_version()}, one thread per process; "
                 f"load average (1/5/15 min) {'/'.join(f'{x:.1f}' for x in load_before)} before, "
                 f"{'/'.join(f'{x:.1f}' for x in load_after)} after.")
    lines.append("")
    lines.append("| configuration | files | audio (s) | cores | wall (s) | x real time per core | CPU (s) "
                 "| x real time per CPU second | peak RSS (MB) |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, r in rows:
        # With worker processes: the parent's peak plus the largest worker's, times the number of workers.
        rss = r["peak_rss_mb"] + (r["cores"] * r["peak_worker_rss_mb"] if r["cores"] > 1 else 0.0)
        lines.append(f"| {label} | {r['files']} | {r['audio_s']:.0f} | {r['cores']} | {r['wall_s']:.1f} | "
                     f"{r['xrt_per_core']:.1f} | {r['cpu_s']:.1f} | {r['xrt_per_cpu_s']:.1f} | {rss:.0f} |")
    by = dict(rows)
    lines.append("")
    lines.append("Ratios (same run):")
    lines.append("")
    for name, naive_waste, our_waste in pads:
        def ratio(ours: str, naive: str = "naive fp32", per: str = "xrt_per_core") -> float:
            return by[f"ssl ours {ours}, {name}"][per] / by[f"ssl {naive}, {name}"][per]

        fp32, int8, int8_int8, bf16 = ratio("fp32"), ratio("int8"), ratio("int8", "naive int8"), ratio("bf16")
        cpu_fp32, cpu_int8 = ratio("fp32", per="xrt_per_cpu_s"), ratio("int8", per="xrt_per_cpu_s")
        # Removing padding saves at most the padded samples: naive runs the model on audio / (1 - its waste),
        # ours on audio / (1 - our waste) (a little more where attention's quadratic cost meets long padding).
        ceiling = (1 - our_waste) / (1 - naive_waste)
        lines.append(f"- SSL, {name}: padding waste naive {100 * naive_waste:.0f}% vs ours {100 * our_waste:.0f}% "
                     f"(so removing padding alone gives about {ceiling:.2f}x at most); "
                     f"ours fp32 / naive fp32 = {fp32:.2f}x (target >= 2); ours int8 / naive fp32 = {int8:.2f}x "
                     f"(target >= 3); ours int8 / naive int8 = {int8_int8:.2f}x; ours bf16 / naive fp32 = "
                     f"{bf16:.2f}x; per CPU second (counting the decoding helper): fp32 {cpu_fp32:.2f}x, "
                     f"int8 {cpu_int8:.2f}x")
    if pads:
        lines.append(f"- embedding cosine to fp32 on {len(cosines['int8'])} dev files: int8 {min(cosines['int8']):.4f}-"
                     f"{max(cosines['int8']):.4f}, bf16 {min(cosines['bf16']):.4f}-{max(cosines['bf16']):.4f}")
    spectral = [r for label, r in rows if label.startswith("spectral, dev")]
    speedup = spectral[0]["wall_s"] / spectral[1]["wall_s"]
    lines.append(f"- spectral, 1 worker: {spectral[0]['xrt_per_core']:.0f}x real time per core (target >= 200); "
                 f"2 workers / 1 worker wall-time speed-up = {speedup:.2f}x (target >= 1.7)")
    rss = [r for label, r in rows if label.startswith("spectral, synthetic")]
    lines.append(f"- peak RSS, spectral: {rss[0]['peak_rss_mb']:.0f} MB at N={args.rss_small} vs "
                 f"{rss[1]['peak_rss_mb']:.0f} MB at N={args.rss_large} "
                 f"({rss[1]['peak_rss_mb'] / rss[0]['peak_rss_mb']:.2f}x; flat = 1.00x)")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
