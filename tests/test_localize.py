"""Localisation: segment scores on spliced audio with a known detector, splice bookkeeping, boundary metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from audios.detect import DetectConfig, detect_path
from audios.errors import AudioError, ConfigError, SilentAudioError
from audios.evaluate.metrics import MetricInputError
from audios.localize import (
    BoundaryCounts,
    SegmentConfig,
    evaluate_localization,
    match_boundaries,
    region_boundaries,
    score_segments_path,
    score_segments_signal,
    segment_grid,
    segment_labels,
    smooth_scores,
)
from audios.synth.splice import SpliceConfig, splice_pairs, splice_signal
from tests.conftest import speechlike, tone, write
from tests.test_detect import ToneDetector

SR = 16000


def marked_spoof(duration_s: float, seed: int = 1) -> np.ndarray:
    """'Synthetic' speech: speech-like audio marked by a 6 kHz tone (what ToneDetector calls fake)."""
    return (0.3 * speechlike(duration_s, seed=seed) + tone(6000, duration_s, amplitude=0.3)).astype(np.float32)


def test_match_boundaries_known_answers():
    assert match_boundaries([1.0, 2.05], [1.1, 2.0], 0.2) == BoundaryCounts(2, 2, 2)
    # One prediction cannot claim two true boundaries; the closest pair wins.
    c = match_boundaries([1.0], [0.95, 1.1], 0.2)
    assert (c.hits, c.precision, c.recall) == (1, 1.0, 0.5)
    assert match_boundaries([3.0], [1.0], 0.2).precision == 0.0
    assert match_boundaries([], [], 0.2) == BoundaryCounts(0, 0, 0)
    assert BoundaryCounts(0, 0, 2).precision == 1.0 and BoundaryCounts(0, 0, 2).recall == 0.0
    with pytest.raises(MetricInputError, match="tolerance_s"):
        match_boundaries([1.0], [1.0], -1)


def test_grid_smoothing_labels_and_edges():
    starts, ends = segment_grid(1.0, SegmentConfig(segment_s=0.16, hop_s=0.08))
    assert starts[0] == 0 and ends[-1] == pytest.approx(1.0) and np.all(np.diff(starts) == pytest.approx(0.08))
    assert segment_grid(0.1, SegmentConfig())[1].tolist() == [0.1]
    assert smooth_scores([0, 0, 9, 0, 0], 3).tolist() == [0, 0, 0, 0, 0]  # a lone outlier is removed
    assert smooth_scores([1, 2, 3], 1).tolist() == [1, 2, 3]
    assert region_boundaries([(0.0, 1.0), (2.0, 3.0)], 3.0).tolist() == [1.0, 2.0]  # file edges left out
    with pytest.raises(ConfigError, match="hop_s"):
        SegmentConfig(segment_s=0.1, hop_s=0.2)
    with pytest.raises(ConfigError, match="smoothing"):
        SegmentConfig(smoothing="max")


def test_spliced_tone_is_localised_by_segments(tmp_path):
    parent = speechlike(6.0, seed=0)
    spoof = marked_spoof(6.0)
    x = splice_signal(parent, spoof, int(2.3 * SR), int(3.5 * SR), int(2.3 * SR), int(0.01 * SR))
    path = write(tmp_path / "spliced.wav", x)
    config = DetectConfig(segments=SegmentConfig())
    result = detect_path(ToneDetector(), path, config)
    plain = detect_path(ToneDetector(), path)
    assert set(result) - set(plain) == {"segments", "segment_regions"}  # existing keys unchanged
    assert result["windows"] == plain["windows"] and result["decision"] == plain["decision"]
    assert {"start_s", "end_s", "p_fake"} == set(result["segments"][0])
    (region,) = result["segment_regions"]
    assert region["start_s"] == pytest.approx(2.3, abs=0.1) and region["end_s"] == pytest.approx(3.5, abs=0.1)
    seg = score_segments_signal(ToneDetector(), x, SegmentConfig())
    labels = segment_labels(seg, [(2.3, 3.5)])
    assert (~labels).sum() == pytest.approx(1.2 / 0.08, abs=1)
    assert np.sum((seg.scores < 0) != ~labels) <= 2  # at most the segment straddling each boundary


def test_fixed_input_detectors_use_their_window_as_context():
    class Fixed(ToneDetector):
        kind = "aasist"
        window_s = 2.0

    seen = []

    class Recording(Fixed):
        def score_signals(self, signals):
            seen.extend(len(s) for s in signals)
            return super().score_signals(signals)

    score_segments_signal(Recording(), speechlike(5.0), SegmentConfig())
    assert max(seen) == 2 * SR


@pytest.fixture
def spliced_set(tmp_path):
    """A paired table like `audios synth` writes (parents + time-aligned 'synthetic' versions), then spliced."""
    rows = []
    for i in range(4):
        write(tmp_path / "corpus" / f"p{i}.wav", speechlike(4.0, seed=i, f0_hz=110 + 10 * i))
        write(tmp_path / "synth" / "tonegen" / f"p{i}.flac", marked_spoof(4.0, seed=10 + i))
        rows.append({"id": f"p{i}", "path": f"p{i}.wav", "label": "bonafide", "generator": "human",
                     "speaker": "s", "parent_id": f"p{i}", "root": str(tmp_path / "corpus")})
        rows.append({"id": f"tonegen/p{i}", "path": f"tonegen/p{i}.flac", "label": "spoof", "generator": "tonegen",
                     "speaker": "s", "parent_id": f"p{i}", "root": str(tmp_path / "synth")})
    report = splice_pairs(pd.DataFrame(rows), tmp_path / "synth", SpliceConfig(min_s=0.8, max_s=1.2, seed=3))
    return tmp_path, report


def test_splice_pairs_records_true_boundaries(spliced_set):
    tmp_path, report = spliced_set
    assert (report.n_spliced, report.n_bonafide, report.skipped) == (4, 4, [])
    table = pd.read_csv(report.manifest_path)
    spliced = table[table["label"] == "spoof"]
    for _, row in spliced.iterrows():
        ((a, b),) = json.loads(row["spoof_regions"])
        assert 0.5 <= a and b <= 3.5 and 0.8 - 1e-3 <= b - a <= 1.2 + 1e-3
        x, _ = sf.read(tmp_path / "synth" / row["path"], dtype="float32")
        seg = score_segments_signal(ToneDetector(), x, SegmentConfig())
        labels = segment_labels(seg, [(a, b)])
        assert np.mean((seg.scores < 0) == ~labels) > 0.9
    assert (table[table["label"] == "bonafide"]["spoof_regions"] == "[]").all()


def test_localisation_metrics_on_spliced_data(spliced_set):
    _, report = spliced_set
    table = pd.read_csv(report.manifest_path)
    result = evaluate_localization(ToneDetector(), table, SegmentConfig(), tolerance_s=0.2)
    assert result.n_files == 8 and result.n_skipped == 0
    assert result.boundaries.n_true == 8
    assert result.boundaries.precision >= 0.5 and result.boundaries.recall >= 0.5
    assert result.segment_eer < 0.1
    assert "segment EER" in result.summary()


def test_splice_refuses_too_short_parents(tmp_path):
    write(tmp_path / "p.wav", speechlike(1.0))
    write(tmp_path / "s.wav", marked_spoof(1.0))
    rows = [{"id": "p", "path": "p.wav", "label": "bonafide", "parent_id": "p", "root": str(tmp_path)},
            {"id": "s", "path": "s.wav", "label": "spoof", "parent_id": "p", "root": str(tmp_path)}]
    report = splice_pairs(pd.DataFrame(rows), tmp_path / "out", SpliceConfig())
    assert report.n_spliced == 0 and "too short" in report.skipped[0][1]


def test_service_adds_segments_and_explanation_on_request():
    import base64
    import io

    from fastapi.testclient import TestClient

    from audios.serve import create_app

    x = np.concatenate([speechlike(2.0), marked_spoof(1.0), speechlike(1.5, seed=4)])
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="WAV")
    class Versioned(ToneDetector):
        def info(self):
            return {"name": self.name, "version": "0-test", "threshold": self.threshold}

    with TestClient(create_app(Versioned())) as client:
        plain = client.post("/v1/detect", files={"file": ("a.wav", buf.getvalue(), "audio/wav")}).json()
        assert "segments" not in plain and "explanation_png" not in plain
        body = client.post("/v1/detect?segments=1&explain=1",
                           files={"file": ("a.wav", buf.getvalue(), "audio/wav")}).json()
    (region,) = body["segment_regions"]
    assert region["start_s"] == pytest.approx(2.0, abs=0.1) and region["end_s"] == pytest.approx(3.0, abs=0.1)
    assert base64.b64decode(body["explanation_png"]).startswith(b"\x89PNG")


def test_segments_a_detector_cannot_judge_take_their_neighbours_score():
    class RatioDetector(ToneDetector):
        def score_signals(self, signals):
            return np.array([np.nan if np.abs(x).max() < 1e-3 else s
                             for x, s in zip(signals, super().score_signals(signals), strict=True)])

    x = np.concatenate([speechlike(1.0), np.zeros(SR // 2, dtype=np.float32), marked_spoof(1.0)])
    seg = score_segments_signal(RatioDetector(), x, SegmentConfig(smooth=1))
    assert np.isfinite(seg.scores).all()
    assert seg.scores[0] > 0 and seg.scores[-1] < 0


def test_a_digitally_silent_pause_does_not_skip_the_recording(tmp_path):
    class RefusesSilence(ToneDetector):
        """Like the feature extractors: a silent window is an error, not a score."""

        def score_signals(self, signals):
            if any(np.abs(x).max() < 1e-4 for x in signals):
                raise SilentAudioError("batch", "all samples are silent")
            return super().score_signals(signals)

    x = np.concatenate([speechlike(1.0), np.zeros(SR // 2, dtype=np.float32), marked_spoof(1.0)])
    seg = score_segments_signal(RefusesSilence(), x, SegmentConfig(smooth=1))
    assert np.isfinite(seg.scores).all()
    assert seg.scores[0] > 0 and seg.scores[-1] < 0
    # The segments inside the pause take the nearest judged score: real before its middle, fake after.
    centres = (seg.starts_s + seg.ends_s) / 2
    assert (seg.scores[(centres > 1.1) & (centres < 1.2)] > 0).all()
    assert (seg.scores[(centres > 1.3) & (centres < 1.4)] < 0).all()
    path = write(tmp_path / "pause.wav", x, SR)
    with_path = score_segments_path(RefusesSilence(), path, SegmentConfig(smooth=1))
    np.testing.assert_allclose(with_path.scores, seg.scores)
    silent = np.zeros(SR, dtype=np.float32)
    with pytest.raises(AudioError, match="no finite segment score"):
        score_segments_signal(RefusesSilence(), silent, SegmentConfig())
