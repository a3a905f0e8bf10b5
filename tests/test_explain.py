"""Explanations: known-answer saliency (a detector keyed on a 6 kHz tone must highlight that band), CLI output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import audios.cli.beyond  # noqa: F401  (registers fuse, explain, localize-eval)
from audios.cli import app
from audios.detect import load_detector
from audios.explain import ExplainConfig, explain_signal, integrated_gradients, occlusion_saliency
from tests.conftest import speechlike, tone, write

SR = 16000


@pytest.fixture(scope="module")
def tone_run(tmp_path_factory) -> Path:
    """A classic logreg on spectral features: spoof = speech + a 6 kHz tone, bona fide = speech."""
    from audios.classic.train import TrainConfig, train_classic
    from audios.features.base import get_extractor
    from audios.features.extract import extract_features

    root = tmp_path_factory.mktemp("tone_run")
    rows = []
    for i in range(16):
        for label in ("bonafide", "spoof"):
            x = speechlike(1.5, seed=i, f0_hz=100 + 6 * i)
            if label == "spoof":
                x = (x + tone(6000, 1.5, amplitude=0.1)).astype(np.float32)
            rel = f"{label}/{i}.wav"
            write(root / "data" / rel, x)
            rows.append({"id": f"{label}{i}", "path": rel, "label": label,
                         "generator": "tone" if label == "spoof" else "human", "speaker": f"s{i % 4}",
                         "utterance": f"u{i}_{label}", "root": str(root / "data"),
                         "split": "train" if i < 10 else ("val" if i < 13 else "test")})
    extract_features(pd.DataFrame(rows), get_extractor("spectral"), root / "f.parquet", cache_dir=root / "cache")
    train_classic(TrainConfig(features=str(root / "f.parquet"), model="logreg", out=str(root / "run"),
                              n_bootstrap=0))
    return root


def spoof_clip(seed: int = 99) -> np.ndarray:
    return (speechlike(2.0, seed=seed, f0_hz=130) + tone(6000, 2.0, amplitude=0.1)).astype(np.float32)


def test_occlusion_highlights_the_tone_band(tone_run):
    detector = load_detector(str(tone_run / "run"))
    saliency = occlusion_saliency(detector, spoof_clip(), ExplainConfig(n_bands=16, n_times=4))
    assert saliency.values.shape == (16, 4)
    profile = saliency.band_profile()
    inside = (saliency.band_edges_hz[1:] > 5500) & (saliency.band_edges_hz[:-1] < 6500)
    # The two bands around the tone (2 of 16) carry far more than their share; the strongest band is the tone's.
    assert profile[inside].mean() > 3 * profile[~inside].mean()
    assert saliency.band_share(5500, 6500) > 0.3
    assert 5500 <= saliency.top_bands(1)[0]["low_hz"] < 6500
    # Removing the tone makes the clip look real: the best patch raises the bona fide score.
    assert saliency.values.max() > 0


def test_linear_contributions_point_to_fake_on_a_spoof(tone_run):
    detector = load_detector(str(tone_run / "run"))
    explanation = explain_signal(detector, spoof_clip(), ExplainConfig(n_bands=8, n_times=2, top_features=5))
    assert explanation.saliency.method == "occlusion"
    assert len(explanation.contributions) == 5
    values = [v for _, v in explanation.contributions]
    assert values == sorted(values, key=abs, reverse=True)
    assert sum(values) > 0  # the top features argue for fake on a clip with the tone


def test_integrated_gradients_known_answer():
    """A differentiable scorer that only looks at 5.8-6.2 kHz energy: all attribution lands in that band."""
    freqs = torch.fft.rfftfreq(SR * 2, 1 / SR)
    band = ((freqs > 5800) & (freqs < 6200)).float()

    def score_fn(y: torch.Tensor) -> torch.Tensor:
        power = torch.fft.rfft(y, n=SR * 2).abs().square()
        return -0.01 * (power * band).sum(dim=1).sqrt()  # more tone energy = more fake

    x = spoof_clip()
    saliency = integrated_gradients(score_fn, x, SR, ExplainConfig(n_bands=16, n_times=4, steps=8))
    assert saliency.band_share(5500, 6500) > 0.9
    # Completeness: the evidence for fake adds up to score(silence) - score(x).
    expected = float(score_fn(torch.zeros(1, x.size))) - saliency.base_score
    assert expected > 0 and saliency.values.sum() == pytest.approx(expected, rel=0.05)


def test_explain_cli_writes_png_and_json(tone_run, tmp_path):
    clip = write(tmp_path / "clip.wav", spoof_clip(7))
    result = CliRunner().invoke(app, ["explain", str(clip), "--model", str(tone_run / "run"), "-o",
                                      str(tmp_path / "out"), "--bands", "8", "--times", "2"])
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "out" / "clip.explain.json").read_text())
    assert data["decision"] == "fake" and data["explanation"]["method"] == "occlusion"
    assert (tmp_path / "out" / "clip.explain.png").stat().st_size > 1000
    assert 5000 <= data["explanation"]["top_bands"][0]["low_hz"] <= 6500
