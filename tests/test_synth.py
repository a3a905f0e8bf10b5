"""Copy-synthesis: each method on generated speech-like signals, the paired manifest, resumption and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from conftest import speechlike, write
from typer.testing import CliRunner

from audios.errors import ConfigError
from audios.manifest import read_manifest
from audios.split import SplitConfig, leak_check, split_manifest
from audios.synth import SynthConfig, SynthContext, get_method, match_level, synthesize_manifest
from audios.synth.espeak import EspeakConfig, find_espeak
from audios.synth.griffinlim import GriffinLimConfig
from audios.synth.neural import CodecConfig, VocoderConfig
from audios.synth.world import WorldConfig, import_pyworld

RATES = (16000, 22050)
CTX = SynthContext("item", seed=7)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny randomly initialised vocoder and codec, saved and later loaded like a hub checkpoint."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("models")
    # initializer_range 0.5: the default 0.01 makes a random HiFi-GAN output ~1e-9, i.e. silence.
    voc = transformers.SpeechT5HifiGanConfig(upsample_initial_channel=16, resblock_kernel_sizes=[3],
                                             resblock_dilation_sizes=[[1]], initializer_range=0.5)
    transformers.SpeechT5HifiGan(voc).save_pretrained(root / "tiny_hifigan")
    enc = transformers.EncodecConfig(hidden_size=16, num_filters=4, codebook_size=64, codebook_dim=16,
                                     num_lstm_layers=1, target_bandwidths=[1.5, 3.0, 6.0])
    transformers.EncodecModel(enc).save_pretrained(root / "tiny_encodec")
    return {"vocoder": root / "tiny_hifigan", "codec": root / "tiny_encodec"}


def synth(name: str, config, x: np.ndarray, rate: int) -> np.ndarray:
    method = get_method(name)
    if method.check:
        method.check(config)
    s = method.build(config)
    y = s(x, rate, CTX)
    return match_level(y, x, rate, s.level_mode)[0]


def db(a: np.ndarray) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.asarray(a, np.float64) ** 2))))


def f0_track(x: np.ndarray, rate: int) -> np.ndarray:
    pw = import_pyworld()
    xd = x.astype(np.float64)
    f0, t = pw.dio(xd, rate)
    return pw.stonemask(xd, f0, t, rate)


def test_registry_and_configs():
    with pytest.raises(ConfigError, match="world"):
        get_method("wavenet")
    with pytest.raises(ConfigError, match="f0_scale"):
        WorldConfig(f0_scale=10)
    with pytest.raises(ConfigError, match="representation"):
        GriffinLimConfig(representation="cqt")
    assert WorldConfig().generator() == "world"
    assert WorldConfig(f0_scale=1.2).generator() == "world-f0x1.2"
    assert GriffinLimConfig(representation="mel").generator() == "griffinlim-mel-32it"
    assert VocoderConfig().generator() == "vocoder-speecht5_hifigan"
    assert CodecConfig(bandwidth_kbps=6).generator() == "codec-encodec_24khz-6kbps"
    assert EspeakConfig(voices=("en-us",)).generator() == "espeak-en-us"


@pytest.mark.parametrize("rate", RATES)
def test_world_follows_f0_and_scales_it(rate):
    x = speechlike(1.0, rate)
    y = synth("world", WorldConfig(), x, rate)
    assert y.size == x.size and np.std(y) > 0.01
    assert abs(db(y) - db(x)) < 0.5
    fx, fy = f0_track(x, rate), f0_track(y, rate)
    voiced = (fx > 0) & (fy > 0)
    assert voiced.mean() > 0.5
    assert np.median(np.abs(fy[voiced] - fx[voiced])) < 0.05 * np.median(fx[voiced])
    up = f0_track(synth("world", WorldConfig(f0_scale=1.2), x, rate), rate)
    voiced = (fx > 0) & (up > 0)
    assert np.median(up[voiced]) / np.median(fx[voiced]) == pytest.approx(1.2, abs=0.03)


@pytest.mark.parametrize("rate", RATES)
def test_griffinlim_keeps_magnitude_loses_waveform(rate):
    import librosa

    x = speechlike(1.0, rate)
    cfg = GriffinLimConfig()
    y = synth("griffinlim", cfg, x, rate)
    assert y.size == x.size and abs(db(y) - db(x)) < 0.5
    assert np.corrcoef(x, y)[0, 1] < 0.9
    n_fft, win, hop = cfg.frames(rate)
    sx = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, win_length=win))
    sy = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=win))
    assert np.linalg.norm(sy - sx) / np.linalg.norm(sx) < 0.3  # spectral convergence
    mel = synth("griffinlim", GriffinLimConfig(representation="mel", n_iter=8), x, rate)
    assert mel.size == x.size and np.std(mel) > 0.01 and np.corrcoef(x, mel)[0, 1] < 0.9


@pytest.mark.parametrize("rate", RATES)
def test_neural_vocoder_and_codec_from_saved_folders(tiny_models, rate):
    x = speechlike(0.6, rate)
    for name, cfg in (("vocoder", VocoderConfig(model=str(tiny_models["vocoder"]))),
                      ("codec", CodecConfig(model=str(tiny_models["codec"]), bandwidth_kbps=3.0))):
        y = synth(name, cfg, x, rate)
        assert y.dtype == np.float32 and y.size == x.size
        # Not silent, not constant (random weights may add a DC offset), level matched; no quality claim.
        assert db(y) > -40 and np.std(y) > 1e-3 and abs(db(y) - db(x)) < 0.5
        assert not np.allclose(y, x, atol=1e-3)


def test_neural_errors_name_the_problem(tiny_models, tmp_path):
    with pytest.raises(ConfigError, match="cannot load"):
        get_method("vocoder").check(VocoderConfig(model=str(tmp_path / "missing")))
    with pytest.raises(ConfigError, match="bandwidths"):
        get_method("codec").check(CodecConfig(model=str(tiny_models["codec"]), bandwidth_kbps=24))
    with pytest.raises(ConfigError, match="supported vocoders"):
        get_method("vocoder").check(VocoderConfig(model=str(tiny_models["codec"])))


@pytest.mark.skipif(find_espeak() is None, reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_espeak_speaks_in_several_voices():
    rate = 16000
    x = speechlike(2.0, rate)
    method = get_method("espeak")
    outs = {}
    for voice in ("en-us", "en-us+f3"):
        cfg = EspeakConfig(voices=(voice,))
        method.check(cfg)
        s = method.build(cfg)
        y = s(x, rate, SynthContext("a", 3, text="The kettle began to whistle."))
        y = match_level(y, x, rate, s.level_mode)[0]
        assert 0.8 < y.size / rate < 6 and np.std(y) > 0.01
        outs[voice] = y
    a, b = outs.values()
    n = min(a.size, b.size)
    assert a.size != b.size or np.corrcoef(a[:n], b[:n])[0, 1] < 0.9
    # No transcript: a bundled sentence, still speech of plausible length.
    y = method.build(EspeakConfig())(x, rate, SynthContext("b", 4))
    assert 0.8 < y.size / rate < 10


def test_espeak_absent_gives_clear_message(monkeypatch):
    monkeypatch.setattr("audios.synth.espeak.find_espeak", lambda: None)
    with pytest.raises(ConfigError, match="apt-get install espeak-ng"):
        get_method("espeak").check(EspeakConfig())


def test_match_level_limits_peak():
    x = speechlike(0.5, 16000, amplitude=0.9)
    y = np.zeros_like(x)
    y[::400] = 1.0  # very peaky: matching the RMS would clip
    out, diff = match_level(y, x, 16000)
    assert np.max(np.abs(out)) <= 0.99 + 1e-6 and diff < -1


def make_corpus(root: Path) -> Path:
    rows = []
    for i in range(6):
        rate = RATES[i % 2]
        rel = f"bonafide/spk{i % 3}/utt{i}.wav"
        write(root / rel, speechlike(0.5, rate, f0_hz=100 + 20 * i, seed=i), rate)
        # Half the utterances are unknown: the pair must then stay together through parent_id alone.
        rows.append((rel, "bonafide", "human", f"spk{i % 3}", f"u{i}" if i % 2 else "unknown"))
    write(root / "spoof/x/utt0.wav", speechlike(0.5, 16000, seed=9), 16000)
    rows.append(("spoof/x/utt0.wav", "spoof", "x", "spk0", "u9"))
    (root / "bonafide/spk0/broken.wav").write_bytes(b"RIFF....WAVEfmt not really")
    rows.append(("bonafide/spk0/broken.wav", "bonafide", "human", "spk0", "u8"))
    pd.DataFrame(rows, columns=["path", "label", "generator", "speaker", "utterance"]).to_csv(
        root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_paired_manifest_resume_and_skips(tmp_path, tiny_models):
    manifest = read_manifest(make_corpus(tmp_path / "corpus"))
    out = tmp_path / "out"
    cfg = SynthConfig(methods=("world", "vocoder"))
    settings = {"vocoder": VocoderConfig(model=str(tiny_models["vocoder"]))}
    report = synthesize_manifest(manifest, out, cfg, settings)
    table = read_manifest(out / "manifest.csv")
    assert len(table) == 12 and set(table["label"]) == {"spoof"}
    assert set(table["generator"]) == {"world", "vocoder-tiny_hifigan"}
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["path"]) == ["bonafide/spk0/broken.wav"]
    src = manifest.set_index("id")
    for _, row in table.iterrows():
        parent = src.loc[row["parent_id"]]
        assert row["id"] == f"{row['parent_id']}__{row['generator']}"
        assert (row["speaker"], row["utterance"]) == (parent["speaker"], parent["utterance"])
        info = sf.info(str(out / row["path"]))
        ref = sf.info(str(Path(parent["root"]) / parent["path"]))
        assert info.samplerate == ref.samplerate and info.frames == ref.frames
        x, _ = sf.read(str(Path(parent["root"]) / parent["path"]))
        assert abs(float(row["rms_dbfs"]) - db(x)) < 0.5
    # The paired table splits with every parent and its spoofs together, and passes the leak check.
    paired = read_manifest(out / "paired.csv")
    assert len(paired) == 18 and (paired["label"] == "bonafide").sum() == 6
    split = split_manifest(paired, SplitConfig(ratios=(0.5, 0.25, 0.25), seed=1)).table
    assert split.groupby("parent_id")["split"].nunique().max() == 1
    assert split["split"].nunique() > 1
    assert leak_check(split).ok

    # Interruption: two outputs lose their completion records, one loses its file too.
    records = sorted((out / ".done").glob("*.json"))
    victims = [json.loads(r.read_text())["row"]["path"] for r in records[:2]]
    for r in records[:2]:
        r.unlink()
    (out / victims[0]).unlink()
    keep = {p: (out / p).stat().st_mtime_ns for p in table["path"] if p not in victims}
    again = synthesize_manifest(manifest, out, cfg, settings)
    assert (again.n_jobs, again.n_resumed) == (14, 10)  # 7 sources x 2 methods; the broken one is retried
    assert all((out / p).stat().st_mtime_ns == t for p, t in keep.items())
    assert (out / victims[0]).exists()
    pd.testing.assert_frame_equal(read_manifest(out / "manifest.csv").drop(columns="sha256"),
                                  table.drop(columns="sha256"))
    assert report.n_resumed == 0


def test_limit_is_seeded_and_cli_runs(tmp_path):
    from audios.cli.app import app
    import audios.cli.synth  # noqa: F401  (registers the command)

    mpath = make_corpus(tmp_path / "corpus")
    runner = CliRunner()
    args = ["synth", str(mpath), "--method", "world", "--f0-scale", "1.1", "--limit", "3", "--seed", "5",
            "--no-progress"]
    r1 = runner.invoke(app, [*args, "-o", str(tmp_path / "a")])
    assert r1.exit_code == 0, r1.output
    r2 = runner.invoke(app, [*args, "-o", str(tmp_path / "b")])
    a, b = (read_manifest(tmp_path / d / "manifest.csv") for d in "ab")
    assert len(a) + len(pd.read_csv(tmp_path / "a/skipped.csv")) == 3
    assert list(a["parent_id"]) == list(b["parent_id"]) and set(a["generator"]) == {"world-f0x1.1"}
    bad = runner.invoke(app, ["synth", str(mpath), "--method", "wavenet", "-o", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "griffinlim" in bad.output
