"""The portable detector: its front end on signals with known answers, ONNX == PyTorch, and the bundled detector."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.fft

from audios.errors import ConfigError
from audios.features.frames import mel_filterbank, power_spectrogram
from audios.portable import (
    PortableConfig,
    PortableExtractor,
    PortableHead,
    dct_matrix,
    export_portable,
    load_torch_net,
    read_detector_json,
    slaney_mel_filters,
)

torch = pytest.importorskip("torch")
SR = 16000


def tone(f_hz: float, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * f_hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def ext() -> PortableExtractor:
    return PortableExtractor()


def features(ext: PortableExtractor, x: np.ndarray) -> dict[str, float]:
    return dict(zip(ext.columns, ext.extract([x])[0], strict=True))


def test_fixed_matrices_equal_the_reference_formulas():
    np.testing.assert_allclose(slaney_mel_filters(SR, 512, 40), mel_filterbank(SR, 512, 40, 0.0, SR / 2), atol=1e-8)
    x = np.random.default_rng(0).standard_normal((7, 40))
    np.testing.assert_allclose(x @ dct_matrix(40, 13), scipy.fft.dct(x, type=2, norm="ortho", axis=1)[:, :13],
                               atol=1e-12)


def test_tone_centroid_rolloff_zcr_and_flatness(ext):
    f = features(ext, tone(1000.0))
    assert f["centroid_mean"] == pytest.approx(1000.0, rel=0.03)
    assert f["rolloff_mean"] == pytest.approx(1000.0, abs=2 * SR / 512)
    assert f["zcr_mean"] == pytest.approx(2 * 1000.0 / SR, rel=0.05)  # two sign changes per period
    noise = features(ext, (0.1 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32))
    assert noise["flatness_mean"] > 0.3 > 100 * f["flatness_mean"]  # white noise is flat, a tone is not
    assert noise["rolloff_mean"] == pytest.approx(0.85 * SR / 2, rel=0.05)
    assert noise["centroid_mean"] == pytest.approx(SR / 4, rel=0.05)


def test_mfcc_means_match_the_numpy_front_end(ext):
    x = (tone(300.0, 1.0, 0.3) + 0.02 * np.random.default_rng(2).standard_normal(SR)).astype(np.float32)
    power = power_spectrogram(x, 512, 400, 160)
    mfcc = scipy.fft.dct(np.log(power @ mel_filterbank(SR, 512, 40, 0, SR / 2).T + 1e-10), type=2, norm="ortho",
                         axis=1)[:, :13]
    f = features(ext, x)
    got = np.array([f[f"mfcc_{i}_mean"] for i in range(13)])
    np.testing.assert_allclose(got, mfcc.mean(axis=0), rtol=1e-3, atol=1e-3)
    got_std = np.array([f[f"mfcc_{i}_std"] for i in range(13)])
    np.testing.assert_allclose(got_std, mfcc.std(axis=0), rtol=1e-3, atol=1e-3)


def test_digital_silence_is_left_out_of_every_statistic(ext):
    x = tone(700.0, 1.0)
    padded = np.concatenate([np.zeros(SR, np.float32), x, np.zeros(SR // 2, np.float32)])
    a, b = features(ext, x), features(ext, padded)
    # Counting the 150 silent frames would pull the mean log energy towards log(1e-10); only the few frames
    # straddling the signal's edges may differ.
    mel = mel_filterbank(SR, 512, 40, 0, SR / 2)
    naive = scipy.fft.dct(np.log(power_spectrogram(padded, 512, 400, 160) @ mel.T + 1e-10), type=2, norm="ortho",
                          axis=1)[:, 0].mean()
    assert abs(naive - a["mfcc_0_mean"]) > 20
    assert b["mfcc_0_mean"] == pytest.approx(a["mfcc_0_mean"], rel=0.05)
    for name in ("centroid_mean", "zcr_mean", "rolloff_mean"):
        assert b[name] == pytest.approx(a[name], rel=0.05), name
    with torch.inference_mode():  # a window of digital silence inside a file: finite features, not NaN
        assert torch.isfinite(ext._net(torch.zeros(1, SR))).all()


def random_head(ext: PortableExtractor, seed: int = 0) -> PortableHead:
    """A logistic head with random weights on standardised features, as train-classic would fit (LLRs of O(1))."""
    rng = np.random.default_rng(seed)
    signals = [tone(f, 0.5) + (0.05 * rng.standard_normal(SR // 2)).astype(np.float32) for f in (200, 500, 900, 2000)]
    feats = np.stack(ext.extract(signals))
    d = feats.shape[1]
    return PortableHead(mean=feats.mean(axis=0), scale=feats.std(axis=0) + 1e-3, coef=0.1 * rng.standard_normal(d),
                        intercept=0.3, slope=1.5, offset=-0.2, threshold_llr=0.4)


def test_export_onnx_equals_torch_and_folder_round_trips(tmp_path, ext):
    ort = pytest.importorskip("onnxruntime")
    config = PortableConfig()
    head = random_head(ext)
    info = export_portable(config, head, tmp_path, name="t")
    assert info["onnx_max_abs_diff_vs_torch"] < 1e-4
    assert read_detector_json(tmp_path)["threshold"] == pytest.approx(0.4)
    net = load_torch_net(tmp_path)
    noise = np.random.default_rng(3).standard_normal((2, 2 * SR)).astype(np.float32)
    x = np.stack([tone(440.0, 2.0) + 0.02 * noise[0], 0.05 * noise[1]])
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(tmp_path / "model.onnx")).run(["llr"], {"waveform": x})[0]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # The folded graph is the affine head applied to the front end's features.
    feats = np.stack(ext.extract(list(x)))
    expect = head.slope * (((feats - head.mean) / head.scale) @ head.coef + head.intercept) + head.offset
    np.testing.assert_allclose(ref, expect, rtol=1e-4, atol=1e-3)


def test_bad_folders_and_heads_raise(tmp_path):
    with pytest.raises(ConfigError, match="detector.json: missing"):
        read_detector_json(tmp_path)
    (tmp_path / "detector.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ConfigError, match="is not 'audios-portable'"):
        read_detector_json(tmp_path)
    config = PortableConfig()
    bad = PortableHead(mean=np.zeros(3), scale=np.ones(3), coef=np.zeros(3), intercept=0, slope=1, offset=0,
                       threshold_llr=0)
    with pytest.raises(ConfigError, match="shape"):
        export_portable(config, bad, tmp_path / "x")
    with pytest.raises(ConfigError, match="win_length"):
        PortableConfig(win_length=1024)


def test_bundled_detector_onnx_and_torch_backends_agree(dev_corpus):
    from audios.detect import DetectConfig, detect_path, load_detector

    onnx_det, torch_det = load_detector(), load_detector(backend="torch")
    assert onnx_det.info()["kind"] == "portable" and onnx_det.threshold == torch_det.threshold
    manifest = dev_corpus / "manifest.csv"
    rows = [ln.split(",")[0] for ln in manifest.read_text().splitlines()[1:]][::60]
    for rel in rows:
        a = detect_path(onnx_det, dev_corpus / rel, DetectConfig())
        b = detect_path(torch_det, dev_corpus / rel, DetectConfig())
        assert a["decision"] == b["decision"]
        assert abs(a["score"] - b["score"]) < 1e-4, rel
        assert abs(a["p_fake"] - b["p_fake"]) < 1e-4


def test_groups_pick_a_subset_of_the_same_values(ext):
    x = (tone(500.0, 1.0, 0.3) + 0.02 * np.random.default_rng(5).standard_normal(SR)).astype(np.float32)
    only = PortableExtractor(PortableConfig(groups=("mfcc",)))
    assert only.columns == tuple(f"mfcc_{i}_mean" for i in range(13)) + tuple(f"mfcc_{i}_std" for i in range(13))
    full = features(ext, x)
    np.testing.assert_allclose(only.extract([x])[0], [full[c] for c in only.columns], rtol=1e-6)
    with pytest.raises(ConfigError, match="groups"):
        PortableConfig(groups=("mfcc", "pitch"))
