"""Training throughput (clips/s) and inference latency per 4 s clip of every registered deep model, on this CPU.

Usage: python bench/bench_train.py [--models rawcnn,aasist] [--steps 3] [--runs 5] [--threads 2]
       [--out bench/results_train.md]

Training: ``--steps`` timed optimiser steps (after one warm-up step) of AdamW on cross-entropy, batches of 8
random 4 s clips (64000 samples at 16 kHz), train mode; clips/s = 8 * steps / seconds. Inference: eval mode,
no grad, one 4 s clip (batch 1); the median (p50) of ``--runs`` timed runs after one warm-up run.
Models: each registry entry with its default config, plus ``aasist-small`` (configs/aasist-small.yaml) and
``ssl-head`` on a randomly initialised base-size wav2vec 2.0 (transformers' default Wav2Vec2Config: 12 layers,
width 768, ~95 M parameters; only the config is written, no download) with its default ``last-2`` freezing
and ``frozen``. The ssl-head rows train on one view per clip (cross-entropy); ``loss: ce+supcon`` trains on two
views, i.e. about half the clips/s. The load average is printed with the table: other work on the machine slows
every row.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch import nn

from audios.models import get_model
from audios.train import logits_of

ROOT = Path(__file__).resolve().parents[1]
SR = 16000
CLIP_4S = 4 * SR
BATCH = 8


def model_builders(tmp: Path) -> dict[str, Callable[[], nn.Module]]:
    """Name -> builder of every benchmarked model (the ssl-head encoder config is written under ``tmp``)."""
    small = yaml.safe_load((ROOT / "configs" / "aasist-small.yaml").read_text())["model_config"]

    def ssl_head(freeze: str) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            from transformers import Wav2Vec2Config

            folder = tmp / "wav2vec2-base-random"
            if not (folder / "config.json").is_file():
                Wav2Vec2Config().save_pretrained(folder)  # base size; weights drawn at random below
            return get_model("ssl-head")(encoder=str(folder), pretrained=False, freeze=freeze)
        return build

    return {
        "rawcnn": lambda: get_model("rawcnn")(),
        "speccnn": lambda: get_model("speccnn")(),
        "specvit": lambda: get_model("specvit")(),
        "aasist": lambda: get_model("aasist")(),
        "aasist-l": lambda: get_model("aasist-l")(),
        "aasist-small": lambda: get_model("aasist")(**small),
        "ssl-head (last-2)": ssl_head("last-2"),
        "ssl-head (frozen)": ssl_head("frozen"),
    }


def train_clips_per_s(model: nn.Module, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, CLIP_4S, generator=g) * 0.1
    y = torch.tensor([0, 1] * (BATCH // 2))
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=1e-4)
    model.train()

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(logits_of(model(x)), y).backward()
        optimiser.step()

    step()  # warm-up: allocator, optimiser state
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return BATCH * steps / (time.perf_counter() - start)


@torch.no_grad()
def latency_ms_p50(model: nn.Module, runs: int) -> float:
    x = torch.randn(1, CLIP_4S, generator=torch.Generator().manual_seed(1)) * 0.1
    model.eval()
    model(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="", help="comma-separated subset of the names below (default: all)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        builders = model_builders(Path(tmp))
        names = [n.strip() for n in args.models.split(",") if n.strip()] or list(builders)
        for name in names:
            torch.manual_seed(0)
            model = builders[name]()
            n_params = sum(p.numel() for p in model.parameters())
            n_train = sum(p.numel() for p in model.parameters() if p.requires_grad)
            clips_s = train_clips_per_s(model, args.steps)
            latency = latency_ms_p50(model, args.runs)
            rows.append((name, n_params, n_train, clips_s, latency))
            print(f"{name}: {clips_s:.2f} clips/s, {latency:.1f} ms", file=sys.stderr, flush=True)
            del model
    load_after = os.getloadavg()
    lines = [
        f"CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads; load average (1 min) {load_before[0]:.1f} before, {load_after[0]:.1f} after",
        f"training: batch {BATCH} x 4 s clips, {args.steps} timed AdamW steps after 1 warm-up; "
        f"inference: batch 1 x 4 s, p50 of {args.runs} runs",
        "",
        "| model | parameters | trainable | train clips/s | inference ms / 4 s clip (p50) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n_params, n_train, clips_s, latency in rows:
        lines.append(f"| {name} | {n_params / 1e6:.2f} M | {n_train / 1e6:.2f} M | {clips_s:.2f} | {latency:.1f} |")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
